//! Each thread's sequence of operations, derived only from (seed, thread
//! index): the same seed gives every thread the same operations, whatever
//! the other threads do.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::mm::page::PAGE_SIZE;
use crate::workload::ops::{Op, OpKind};
use crate::workload::spec::{IoSize, Mix, OpParams, ThreadPlan, ThreadWork};

/// The random stream of thread `thread` for `seed`.
pub fn thread_rng(seed: u64, thread: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(thread as u64);
    rng
}

/// The bytes a write with `data_seed` stores: never zero, so a write is
/// always told apart from a hole.
pub fn write_data(seed: u64, data_seed: u64, len: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ data_seed.rotate_left(17));
    rng.set_stream(u64::MAX);
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    for b in &mut data {
        if *b == 0 {
            *b = 0x5a;
        }
    }
    data
}

/// The bytes of file `file`'s initial contents.
pub fn initial_data(seed: u64, file: usize, len: usize) -> Vec<u8> {
    write_data(seed, u64::MAX - file as u64, len)
}

/// Produces one thread's operations.
pub struct OpStream {
    rng: ChaCha8Rng,
    work: ThreadWork,
    params: OpParams,
    /// Operations produced so far.
    produced: u64,
    /// The most to produce (`None`: until stopped).
    limit: Option<u64>,
}

impl OpStream {
    /// The stream of thread `thread` running `plan`.
    pub fn new(seed: u64, thread: usize, plan: &ThreadPlan, params: &OpParams) -> OpStream {
        OpStream {
            rng: thread_rng(seed, thread),
            work: plan.work.clone(),
            params: params.clone(),
            produced: 0,
            limit: plan.op_count(),
        }
    }

    /// The next operation, or `None` when the thread is done.
    pub fn next_op(&mut self) -> Option<Op> {
        if self.limit.is_some_and(|limit| self.produced >= limit) {
            return None;
        }
        let op = match &self.work {
            ThreadWork::Script { ops, .. } => {
                ops[(self.produced % ops.len() as u64) as usize].clone()
            }
            ThreadWork::Mix(mix) => {
                let mix = *mix;
                self.random_op(&mix)
            }
        };
        self.produced += 1;
        Some(op)
    }

    /// A value in `[0, bound)` that is a multiple of `align`.
    fn aligned_below(&mut self, bound: u64, align: u64) -> u64 {
        let slots = bound.div_ceil(align).max(1);
        self.rng.random_range(0..slots) * align
    }

    /// A length within `size`, a multiple of its alignment where possible.
    fn length(&mut self, size: IoSize) -> u64 {
        let lo = size.min.div_ceil(size.align);
        let hi = size.max / size.align;
        if lo > hi {
            return size.min;
        }
        self.rng.random_range(lo..=hi) * size.align
    }

    fn random_op(&mut self, mix: &Mix) -> Op {
        let mut pick = self.rng.random_range(0..mix.total());
        let kind = OpKind::ALL
            .into_iter()
            .find(|&k| {
                let w = u64::from(mix.weight(k));
                if pick < w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .expect("the weights sum to the total");
        let p = &self.params;
        let (max, files) = (p.max_file_size, p.files);
        let file = self.rng.random_range(0..files);
        match kind {
            OpKind::Read | OpKind::Write => {
                let size = if kind == OpKind::Read {
                    p.read
                } else {
                    p.write
                };
                let len = self.length(size).min(max);
                let offset = self.aligned_below(max - len + 1, size.align).min(max - len);
                if kind == OpKind::Read {
                    Op::Read { file, offset, len }
                } else {
                    let data_seed = self.rng.next_u64();
                    Op::Write {
                        file,
                        offset,
                        len,
                        data_seed,
                    }
                }
            }
            OpKind::Truncate => {
                let align = p.truncate_align;
                let size = self.aligned_below(max + 1, align).min(max);
                Op::Truncate { file, size }
            }
            OpKind::Fault => {
                let pages = max.div_ceil(PAGE_SIZE as u64);
                Op::Fault {
                    file,
                    page: self.rng.random_range(0..pages),
                }
            }
            OpKind::Fsync => Op::Fsync { file },
            OpKind::Writeback => Op::Writeback { file },
            OpKind::DropCaches => Op::DropCaches,
            OpKind::Reclaim => Op::Reclaim {
                pages: p.reclaim_pages,
            },
            OpKind::Sleep => {
                let (lo, hi) = p.sleep;
                let us = self
                    .rng
                    .random_range(lo.as_micros() as u64..=hi.as_micros() as u64);
                Op::Sleep {
                    duration: std::time::Duration::from_micros(us),
                }
            }
            OpKind::ClusterLock => Op::ClusterLock {
                file,
                hold: p.cluster_hold,
                mode: p.cluster_mode,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::spec::Workload;

    fn ops_of(w: &Workload, seed: u64, thread: usize) -> Vec<Op> {
        let mut s = OpStream::new(seed, thread, &w.threads[thread], &w.params);
        std::iter::from_fn(|| s.next_op()).collect()
    }

    #[test]
    fn same_seed_same_ops_and_threads_differ() {
        let w = Workload::bundled("concurrent").unwrap();
        assert_eq!(ops_of(&w, 5, 0), ops_of(&w, 5, 0));
        assert_ne!(ops_of(&w, 5, 0), ops_of(&w, 5, 1));
        assert_ne!(ops_of(&w, 5, 0), ops_of(&w, 6, 0));
        assert_eq!(ops_of(&w, 5, 0).len(), 1500);
    }

    #[test]
    fn random_ops_stay_within_the_limits() {
        let w = Workload::parse(
            "w.toml",
            "ops = 5000\nmax_file_size = \"40K\"\n[read]\nmin = 100\nmax = \"8K\"\nalign = 512\n[truncate]\nalign = \"4K\"\n[mix]\nread = 1\nwrite = 1\ntruncate = 1\nfault = 1\n",
        )
        .unwrap();
        for op in ops_of(&w, 1, 0) {
            assert!(op.end_offset() <= 40 << 10, "{op}");
            match op {
                Op::Read { offset, len, .. } => {
                    assert_eq!(offset % 512, 0, "{op}");
                    assert_eq!(len % 512, 0, "{op}");
                    assert!((512..=8192).contains(&len), "{op}");
                }
                Op::Truncate { size, .. } => assert_eq!(size % 4096, 0, "{op}"),
                _ => {}
            }
        }
    }

    #[test]
    fn write_data_is_deterministic_and_never_zero() {
        assert_eq!(write_data(1, 2, 100), write_data(1, 2, 100));
        assert_ne!(write_data(1, 2, 100), write_data(1, 3, 100));
        assert!(write_data(9, 9, 10_000).iter().all(|&b| b != 0));
    }
}
