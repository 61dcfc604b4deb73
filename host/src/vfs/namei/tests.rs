use super::*;

const ROOT: Cred = Cred { uid: 0, gid: 0 };

fn ns() -> Namespace {
    Namespace::new(ROOT, 0o755, 1 << 40)
}

fn file(perm: u16) -> NewNode {
    NewNode {
        kind: FileKind::Regular,
        perm,
        rdev: 0,
    }
}

fn dir() -> NewNode {
    NewNode {
        kind: FileKind::Directory,
        perm: 0o755,
        rdev: 0,
    }
}

fn errno(r: Result<impl std::fmt::Debug, NsError>) -> i32 {
    r.expect_err("expected an error").errno()
}

/// The namespace survives a round trip through its image, which the load
/// check accepts.
fn reload(n: &Namespace) -> Namespace {
    let (image, _) = n.image();
    Namespace::from_image(image, 1 << 40).expect("image is consistent")
}

#[test]
fn create_then_lookup_and_eexist() {
    let n = ns();
    let f = n.create(ROOT_INO, b"a", file(0o644), ROOT, None).unwrap();
    assert_eq!(n.lookup(ROOT_INO, b"a").unwrap().ino, f.ino);
    assert_eq!(
        errno(n.create(ROOT_INO, b"a", file(0o644), ROOT, None)),
        libc::EEXIST
    );
    assert_eq!(errno(n.lookup(ROOT_INO, b"b")), libc::ENOENT);
}

#[test]
fn names_over_255_bytes_are_enametoolong() {
    let n = ns();
    let long = vec![b'x'; 256];
    assert_eq!(
        errno(n.create(ROOT_INO, &long, file(0o644), ROOT, None)),
        libc::ENAMETOOLONG
    );
    assert_eq!(errno(n.lookup(ROOT_INO, &long)), libc::ENAMETOOLONG);
    n.create(ROOT_INO, &long[..255], file(0o644), ROOT, None)
        .unwrap();
}

#[test]
fn a_file_is_not_a_directory() {
    let n = ns();
    let f = n.create(ROOT_INO, b"f", file(0o644), ROOT, None).unwrap();
    assert_eq!(
        errno(n.create(f.ino, b"x", file(0o644), ROOT, None)),
        libc::ENOTDIR
    );
    assert_eq!(errno(n.lookup(f.ino, b"x")), libc::ENOTDIR);
    assert_eq!(errno(n.rmdir(ROOT_INO, b"f")), libc::ENOTDIR);
}

#[test]
fn unlink_of_a_directory_is_eisdir_and_rmdir_needs_empty() {
    let n = ns();
    let d = n.create(ROOT_INO, b"d", dir(), ROOT, None).unwrap();
    n.create(d.ino, b"f", file(0o644), ROOT, None).unwrap();
    assert_eq!(errno(n.unlink(ROOT_INO, b"d")), libc::EISDIR);
    assert_eq!(errno(n.rmdir(ROOT_INO, b"d")), libc::ENOTEMPTY);
    let evicted = n.unlink(d.ino, b"f").unwrap();
    assert!(evicted.is_some(), "last name of a closed file evicts it");
    assert_eq!(n.getattr(ROOT_INO).unwrap().nlink, 3);
    let _ = n.rmdir(ROOT_INO, b"d").unwrap().unwrap();
    assert_eq!(n.getattr(ROOT_INO).unwrap().nlink, 2);
}

#[test]
fn an_open_unlinked_file_lives_until_release() {
    let n = ns();
    let f = n.create(ROOT_INO, b"f", file(0o644), ROOT, None).unwrap();
    n.open(f.ino).unwrap();
    assert_eq!(n.unlink(ROOT_INO, b"f").unwrap(), None);
    assert_eq!(n.getattr(f.ino).unwrap().nlink, 0);
    assert!(
        n.image().0.inodes.iter().all(|i| i.ino != f.ino),
        "not checkpointed"
    );
    assert_eq!(
        n.release(f.ino),
        Some(Evict {
            ino: f.ino,
            kind: FileKind::Regular
        })
    );
    assert_eq!(errno(n.getattr(f.ino)), libc::ENOENT);
}

#[test]
fn hard_links_count_and_refuse_directories() {
    let n = ns();
    let f = n.create(ROOT_INO, b"f", file(0o644), ROOT, None).unwrap();
    let d = n.create(ROOT_INO, b"d", dir(), ROOT, None).unwrap();
    assert_eq!(n.link(f.ino, d.ino, b"g").unwrap().nlink, 2);
    assert_eq!(errno(n.link(d.ino, ROOT_INO, b"e")), libc::EPERM);
    assert_eq!(errno(n.link(f.ino, d.ino, b"g")), libc::EEXIST);
    assert_eq!(n.unlink(ROOT_INO, b"f").unwrap(), None);
    assert_eq!(n.lookup(d.ino, b"g").unwrap().nlink, 1);
    reload(&n);
}

#[test]
fn rename_over_an_existing_file_evicts_it() {
    let n = ns();
    let a = n.create(ROOT_INO, b"a", file(0o644), ROOT, None).unwrap();
    let b = n.create(ROOT_INO, b"b", file(0o644), ROOT, None).unwrap();
    let evicted = n.rename(ROOT_INO, b"a", ROOT_INO, b"b", 0).unwrap();
    assert_eq!(evicted.map(|e| e.ino), Some(b.ino));
    assert_eq!(n.lookup(ROOT_INO, b"b").unwrap().ino, a.ino);
    assert_eq!(errno(n.lookup(ROOT_INO, b"a")), libc::ENOENT);
    reload(&n);
}

#[test]
fn rename_kind_rules() {
    let n = ns();
    let d = n.create(ROOT_INO, b"d", dir(), ROOT, None).unwrap();
    n.create(ROOT_INO, b"e", dir(), ROOT, None).unwrap();
    n.create(ROOT_INO, b"f", file(0o644), ROOT, None).unwrap();
    n.create(d.ino, b"inner", file(0o644), ROOT, None).unwrap();
    assert_eq!(
        errno(n.rename(ROOT_INO, b"e", ROOT_INO, b"f", 0)),
        libc::ENOTDIR
    );
    assert_eq!(
        errno(n.rename(ROOT_INO, b"f", ROOT_INO, b"e", 0)),
        libc::EISDIR
    );
    assert_eq!(
        errno(n.rename(ROOT_INO, b"e", ROOT_INO, b"d", 0)),
        libc::ENOTEMPTY
    );
    assert_eq!(
        errno(n.rename(ROOT_INO, b"d", d.ino, b"sub", 0)),
        libc::EINVAL
    );
    assert_eq!(
        errno(n.rename(ROOT_INO, b"f", ROOT_INO, b"e", libc::RENAME_NOREPLACE)),
        libc::EEXIST
    );
    // An empty directory may be replaced by a directory.
    let _ = n
        .rename(ROOT_INO, b"d", ROOT_INO, b"e", 0)
        .unwrap()
        .unwrap();
    assert_eq!(n.lookup(ROOT_INO, b"e").unwrap().ino, d.ino);
    assert_eq!(n.getattr(ROOT_INO).unwrap().nlink, 3);
    reload(&n);
}

#[test]
fn rename_a_directory_moves_dotdot_and_link_counts() {
    let n = ns();
    let a = n.create(ROOT_INO, b"a", dir(), ROOT, None).unwrap();
    let b = n.create(ROOT_INO, b"b", dir(), ROOT, None).unwrap();
    n.rename(ROOT_INO, b"a", b.ino, b"a", 0).unwrap();
    assert_eq!(n.lookup(a.ino, b"..").unwrap().ino, b.ino);
    assert_eq!(n.getattr(b.ino).unwrap().nlink, 3);
    assert_eq!(n.getattr(ROOT_INO).unwrap().nlink, 3);
    reload(&n);
}

#[test]
fn rename_exchange_swaps_names() {
    let n = ns();
    let a = n.create(ROOT_INO, b"a", file(0o644), ROOT, None).unwrap();
    let d = n.create(ROOT_INO, b"d", dir(), ROOT, None).unwrap();
    let sub = n.create(d.ino, b"sub", dir(), ROOT, None).unwrap();
    n.rename(ROOT_INO, b"a", d.ino, b"sub", libc::RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(n.lookup(ROOT_INO, b"a").unwrap().ino, sub.ino);
    assert_eq!(n.lookup(d.ino, b"sub").unwrap().ino, a.ino);
    assert_eq!(n.lookup(sub.ino, b"..").unwrap().ino, ROOT_INO);
    reload(&n);
}

#[test]
fn setgid_directories_pass_on_their_group() {
    let n = ns();
    let d = n
        .create(
            ROOT_INO,
            b"d",
            NewNode {
                kind: FileKind::Directory,
                perm: 0o2775,
                rdev: 0,
            },
            Cred { uid: 0, gid: 77 },
            None,
        )
        .unwrap();
    let user = Cred {
        uid: 1000,
        gid: 1000,
    };
    let f = n.create(d.ino, b"f", file(0o644), user, None).unwrap();
    let s = n.create(d.ino, b"s", dir(), user, None).unwrap();
    assert_eq!((f.gid, s.gid), (77, 77));
    assert_ne!(s.perm & libc::S_ISGID as u16, 0);
    assert_eq!(f.perm & libc::S_ISGID as u16, 0);
}

#[test]
fn a_corrupt_image_is_refused_with_a_reason() {
    let n = ns();
    n.create(ROOT_INO, b"a", file(0o644), ROOT, None).unwrap();
    let (mut image, _) = n.image();
    image.inodes[1].nlink = 5;
    let err = Namespace::from_image(image.clone(), 1 << 40).err().unwrap();
    assert!(err.contains("link count"), "{err}");
    image.inodes.remove(1);
    let err = Namespace::from_image(image, 1 << 40).err().unwrap();
    assert!(err.contains("missing inode"), "{err}");
}

#[test]
fn inode_numbers_stay_below_the_limit() {
    let n = Namespace::new(ROOT, 0o755, 3);
    n.create(ROOT_INO, b"a", file(0o644), ROOT, None).unwrap();
    assert_eq!(
        errno(n.create(ROOT_INO, b"b", file(0o644), ROOT, None)),
        libc::ENOSPC
    );
}

mod model {
    //! Random directory operations (like fsx, for the namespace): after
    //! each one, whatever it returned, the namespace must still load from
    //! its own image (a tree, link counts equal to names, parents right,
    //! everything reachable), and agree with a model of paths.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Create(usize, u8),
        Mkdir(usize, u8),
        Unlink(usize, u8),
        Rmdir(usize, u8),
        Rename(usize, u8, usize, u8, u32),
        Link(usize, u8, usize, u8),
    }

    const NAMES: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];

    fn op() -> impl Strategy<Value = Op> {
        let d = 0usize..8;
        let n = 0u8..4;
        let flags = prop_oneof![
            Just(0u32),
            Just(libc::RENAME_NOREPLACE),
            Just(libc::RENAME_EXCHANGE)
        ];
        prop_oneof![
            (d.clone(), n.clone()).prop_map(|(d, n)| Op::Create(d, n)),
            (d.clone(), n.clone()).prop_map(|(d, n)| Op::Mkdir(d, n)),
            (d.clone(), n.clone()).prop_map(|(d, n)| Op::Unlink(d, n)),
            (d.clone(), n.clone()).prop_map(|(d, n)| Op::Rmdir(d, n)),
            (d.clone(), n.clone(), d.clone(), n.clone(), flags)
                .prop_map(|(a, b, c, e, f)| Op::Rename(a, b, c, e, f)),
            (d.clone(), n.clone(), d, n).prop_map(|(a, b, c, e)| Op::Link(a, b, c, e)),
        ]
    }

    /// The model: path -> (inode, is_dir). Paths are lists of names.
    type Model = BTreeMap<Vec<Vec<u8>>, (u64, bool)>;

    fn dirs(model: &Model) -> Vec<(Vec<Vec<u8>>, u64)> {
        let mut v = vec![(vec![], ROOT_INO)];
        v.extend(
            model
                .iter()
                .filter(|(_, (_, d))| *d)
                .map(|(p, (i, _))| (p.clone(), *i)),
        );
        v
    }

    /// Walk the namespace and list every path.
    fn walk(ns: &Namespace) -> Model {
        let mut out = Model::new();
        let mut stack = vec![(Vec::<Vec<u8>>::new(), ROOT_INO)];
        while let Some((path, ino)) = stack.pop() {
            for (name, child) in ns.children(ino).unwrap() {
                let mut p = path.clone();
                p.push(name);
                let is_dir = ns.getattr(child).unwrap().is_dir();
                out.insert(p.clone(), (child, is_dir));
                if is_dir {
                    stack.push((p, child));
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn random_directory_operations_keep_a_consistent_tree(ops in prop::collection::vec(op(), 1..60)) {
            let ns = ns();
            for op in ops {
                let model = walk(&ns);
                let ds = dirs(&model);
                let pick = |i: usize| ds[i % ds.len()].clone();
                let name = |n: u8| NAMES[n as usize];
                let path = |d: &(Vec<Vec<u8>>, u64), n: u8| {
                    let mut p = d.0.clone();
                    p.push(name(n).to_vec());
                    p
                };
                match op {
                    Op::Create(d, n) | Op::Mkdir(d, n) => {
                        let dir = pick(d);
                        let node = if matches!(op, Op::Create(..)) { file(0o644) } else { super::dir() };
                        let r = ns.create(dir.1, name(n), node, ROOT, None);
                        prop_assert_eq!(r.is_ok(), !model.contains_key(&path(&dir, n)), "{:?}", op);
                    }
                    Op::Unlink(d, n) => {
                        let dir = pick(d);
                        let r = ns.unlink(dir.1, name(n));
                        match model.get(&path(&dir, n)) {
                            None => prop_assert_eq!(r.err().map(|e| e.errno()), Some(libc::ENOENT)),
                            Some((_, true)) => prop_assert_eq!(r.err().map(|e| e.errno()), Some(libc::EISDIR)),
                            Some((_, false)) => prop_assert!(r.is_ok()),
                        }
                    }
                    Op::Rmdir(d, n) => {
                        let dir = pick(d);
                        let p = path(&dir, n);
                        let r = ns.rmdir(dir.1, name(n));
                        let empty = !model.keys().any(|k| k.len() > p.len() && k.starts_with(&p));
                        match model.get(&p) {
                            None => prop_assert_eq!(r.err().map(|e| e.errno()), Some(libc::ENOENT)),
                            Some((_, false)) => prop_assert_eq!(r.err().map(|e| e.errno()), Some(libc::ENOTDIR)),
                            Some((_, true)) if !empty => prop_assert_eq!(r.err().map(|e| e.errno()), Some(libc::ENOTEMPTY)),
                            Some((_, true)) => prop_assert!(r.is_ok()),
                        }
                    }
                    Op::Rename(a, n, b, m, flags) => {
                        let (from, to) = (pick(a), pick(b));
                        let (src, dst) = (path(&from, n), path(&to, m));
                        let r = ns.rename(from.1, name(n), to.1, name(m), flags);
                        if !model.contains_key(&src) {
                            prop_assert_eq!(r.err().map(|e| e.errno()), Some(libc::ENOENT));
                        } else if model[&src].1 && dst.starts_with(&src) && dst != src {
                            prop_assert_eq!(r.err().map(|e| e.errno()), Some(libc::EINVAL));
                        } else if r.is_ok() && flags == 0 {
                            let after = walk(&ns);
                            prop_assert_eq!(after.get(&dst).map(|e| e.0), Some(model[&src].0));
                        }
                    }
                    Op::Link(a, n, b, m) => {
                        let (from, to) = (pick(a), pick(b));
                        let (src, dst) = (path(&from, n), path(&to, m));
                        let r = ns.lookup(from.1, name(n)).and_then(|i| ns.link(i.ino, to.1, name(m)));
                        let ok = matches!(model.get(&src), Some((_, false))) && !model.contains_key(&dst);
                        prop_assert_eq!(r.is_ok(), ok, "{:?}", op);
                    }
                }
                // The invariant: the image is a consistent tree, and
                // reloading it shows the same paths.
                let reloaded = reload(&ns);
                prop_assert_eq!(walk(&reloaded), walk(&ns));
            }
        }
    }
}
