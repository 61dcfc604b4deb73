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
