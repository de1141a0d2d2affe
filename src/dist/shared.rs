//! Sums, gathers and broadcasts through memory that the MPI ranks of one machine share.
//!
//! `MPI_Allreduce` between two processes of one machine copies the vector through the
//! library's buffers and the kernel; for the 235,146 gradient values of a 784-256-128-10
//! network that takes about as long as computing them. Here every rank instead writes its
//! vector into its slot of one shared window (`MPI_Win_allocate_shared`), says so with an
//! atomic counter, waits until every rank has, and reads the slots it needs.
//!
//! A rank that computes its vector can write it into its slot directly
//! ([`NodeMemory::all_reduce_filled`]), which saves the copy. Ranks that split an optimiser
//! step add only their part of the gradient and then copy each other's updated parameters
//! ([`NodeMemory::share_parts`]).
//!
//! The slots come in two sets that alternate between calls. A rank can start call `c + 1`
//! only after every rank has arrived at call `c`, and so has finished reading call `c − 1`,
//! which used the other set. One arrival per call is therefore all the synchronisation.

use super::update_range;
use crate::tensor::Scalar;
use mpi::collective::{CommunicatorCollectives, SystemOperation};
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::{Communicator, SimpleCommunicator};
use std::ffi::c_void;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// The environment variable that sets the size of the shared window in MiB. Set to `0` on
/// any rank, it makes the ranks use MPI's own collectives even on one machine.
pub const SIZE_VARIABLE: &str = "GRADUS_SHARED_MEMORY";

/// Size of the shared window unless [`SIZE_VARIABLE`] sets it. Containers often mount a
/// 64 MiB `/dev/shm`, which Open MPI also uses for its own buffers, so a larger window could
/// fail there.
const DEFAULT_WINDOW_MIB: u64 = 32;

/// Bytes of the header per rank: one cache line holding its arrival counter and the two
/// values of [`NodeMemory::all_reduce_filled`]. Rank 0's line also holds the generation
/// word and the sleeper count that waiting ranks use.
const LINE: usize = 64;

/// Smallest slot, in bytes. A longer vector grows the slots to the next multiple of it.
const MIN_SLOT_BYTES: usize = 1 << 16;

/// Spins before a waiting rank sleeps until another rank arrives, when every rank has a core
/// of its own. With more ranks than cores a waiting rank sleeps at once, because its spinning
/// would take the core from the rank it waits for.
const SPINS: u32 = 4096;

/// Longest sleep between looks at the counters, in case a wake-up is missed.
const SLEEP: Duration = Duration::from_millis(10);

/// The shared window of the ranks of one machine.
pub(super) struct NodeMemory {
    node: SimpleCommunicator,
    window: ffi::MPI_Win,
    /// Start of the window, in this process's address space.
    base: *mut u8,
    slot_bytes: usize,
    /// Largest size of the window, header included.
    max_bytes: usize,
    rank: usize,
    size: usize,
    /// Calls made since the window was allocated; call `c` uses slot set `c % 2`.
    calls: u64,
    /// Spins before sleeping: [`SPINS`], or 0 with more ranks than cores.
    spins: u32,
}

impl NodeMemory {
    /// Returns the shared memory of the ranks of `world`, or `None` when they are not all on
    /// one machine or one of them has the environment variable [`SIZE_VARIABLE`] set to `0`.
    /// The window takes the smallest size that a rank's variable sets. Every rank must call
    /// this, and all get the same answer.
    pub fn new(world: &SimpleCommunicator) -> Option<NodeMemory> {
        let mut mib = 0u64;
        world.all_reduce_into(&window_mib(), &mut mib, SystemOperation::min());
        let node = world.split_shared(world.rank());
        if mib == 0 || node.size() != world.size() {
            return None;
        }
        let mut memory = NodeMemory {
            rank: node.rank() as usize,
            size: node.size() as usize,
            node,
            window: unsafe { ffi::RSMPI_WIN_NULL },
            base: std::ptr::null_mut(),
            slot_bytes: 0,
            max_bytes: mib
                .checked_mul(1 << 20)
                .and_then(|bytes| usize::try_from(bytes).ok())
                .unwrap_or(usize::MAX),
            calls: 0,
            spins: SPINS,
        };
        // SAFETY: sysconf has no preconditions; it returns -1 when it cannot tell.
        let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        if cores > 0 && memory.size > cores as usize {
            memory.spins = 0;
        }
        memory.allocate(MIN_SLOT_BYTES);
        Some(memory)
    }

    /// Whether slots of `bytes` bytes fit in the window's largest size. Calls whose vectors do
    /// not fit go through MPI; every rank decides alike, because all pass the same length.
    pub fn fits(&self, bytes: usize) -> bool {
        self.window_bytes(bytes) <= self.max_bytes
    }

    /// Bytes of a window whose slots hold `bytes` bytes, rounded up as `allocate` rounds.
    fn window_bytes(&self, bytes: usize) -> usize {
        let slot = bytes.max(1).next_multiple_of(MIN_SLOT_BYTES);
        self.size * LINE + 2 * self.size * slot
    }

    /// Frees the window, if any, and allocates one with slots of `slot_bytes`, a multiple of
    /// [`MIN_SLOT_BYTES`]. Collective.
    fn allocate(&mut self, slot_bytes: usize) {
        self.free();
        let total = self.window_bytes(slot_bytes);
        // Rank 0 holds the whole window, so that it is one contiguous block.
        let local = if self.rank == 0 { total } else { 0 };
        let mut mine: *mut u8 = std::ptr::null_mut();
        let (mut size, mut unit) = (0, 0);
        let mut base: *mut u8 = std::ptr::null_mut();
        // SAFETY: the out-pointers point at live locals of the types MPI writes, and the
        // node communicator is valid for the life of `self`. MPI's default error handler
        // aborts the job on failure, so the return codes need no check.
        unsafe {
            ffi::MPI_Win_allocate_shared(
                local as ffi::MPI_Aint,
                1,
                ffi::RSMPI_INFO_NULL,
                self.node.as_raw(),
                (&mut mine as *mut *mut u8).cast::<c_void>(),
                &mut self.window,
            );
            ffi::MPI_Win_shared_query(
                self.window,
                0,
                &mut size,
                &mut unit,
                (&mut base as *mut *mut u8).cast::<c_void>(),
            );
        }
        assert!(
            size as usize >= total && !base.is_null(),
            "MPI gave a shared window of {size} bytes; {total} were asked for"
        );
        self.base = base;
        self.slot_bytes = slot_bytes;
        self.calls = 0;
        if self.rank == 0 {
            for r in 0..self.size {
                self.arrival(r).store(0, Ordering::Relaxed);
            }
            self.generation().store(0, Ordering::Relaxed);
            self.sleepers().store(0, Ordering::Relaxed);
        }
        // SAFETY: as above; no rank reads a counter before rank 0 has cleared them.
        unsafe {
            ffi::MPI_Barrier(self.node.as_raw());
        }
    }

    fn free(&mut self) {
        if self.base.is_null() {
            return;
        }
        // SAFETY: the window was allocated by `allocate` and nobody reads it any more.
        unsafe {
            ffi::MPI_Win_free(&mut self.window);
        }
        self.base = std::ptr::null_mut();
    }

    /// Rank `r`'s arrival counter.
    fn arrival(&self, r: usize) -> &AtomicU64 {
        debug_assert!(r < self.size);
        // SAFETY: the header holds one aligned cache line per rank, inside the window, and
        // every process touches the counters only atomically.
        unsafe { &*self.base.add(r * LINE).cast::<AtomicU64>() }
    }

    /// The value that rank `r` sends with its vector in slot set `set`, as the bits of an
    /// f64, beside its arrival counter. Like the slots, the values come in two sets: one is
    /// written before the counter's release and read after its acquire, and is written again
    /// two calls later, once every rank has read it.
    fn value(&self, set: usize, r: usize) -> &AtomicU64 {
        debug_assert!(r < self.size && set < 2);
        // SAFETY: as for `arrival`; the values sit in the second and third words of the line.
        unsafe { &*self.base.add(r * LINE + 8 + 8 * set).cast::<AtomicU64>() }
    }

    /// Start of rank `r`'s slot in set `set`.
    fn slot_ptr(&self, set: usize, r: usize) -> *mut u8 {
        let offset = self.size * LINE + (set * self.size + r) * self.slot_bytes;
        // SAFETY: the offset lies inside the window that `allocate` sized for it.
        unsafe { self.base.add(offset) }
    }

    /// Writes `data` into this rank's slot of the next call and waits until every rank has
    /// written its own. Returns the slot set to read. Every rank must pass the same `len`,
    /// the longest `data` of the call; a rank with nothing to say passes an empty `data`.
    fn publish<T: Copy>(&mut self, data: &[T], len: usize) -> usize {
        debug_assert!(data.len() <= len);
        let set = self.next_set(len * std::mem::size_of::<T>());
        // SAFETY: `next_set` made the slot hold `len` values, from an address aligned to a
        // cache line, and no other rank reads this set until this rank's counter says so
        // (see the module docs for why none still reads it from two calls ago).
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.slot_ptr(set, self.rank).cast::<T>(),
                data.len(),
            );
        }
        self.arrive();
        set
    }

    /// Starts the next call, whose slots hold `bytes` bytes, and returns its slot set.
    fn next_set(&mut self, bytes: usize) -> usize {
        debug_assert!(self.fits(bytes), "{bytes} bytes do not fit the window");
        if bytes > self.slot_bytes {
            // All ranks see the same length, so all of them grow the window here.
            self.allocate(bytes.next_multiple_of(MIN_SLOT_BYTES));
        }
        self.calls += 1;
        (self.calls % 2) as usize
    }

    /// Says that this rank has written its slot of the current call, and waits until every
    /// rank has.
    fn arrive(&self) {
        self.arrival(self.rank).store(self.calls, Ordering::SeqCst);
        // A rank about to sleep reads the generation before it looks at the counters, so it
        // either sees this arrival or finds the generation changed and does not sleep.
        self.generation().fetch_add(1, Ordering::SeqCst);
        if self.sleepers().load(Ordering::SeqCst) > 0 {
            futex::wake_all(self.generation());
        }
        for r in 0..self.size {
            self.wait_for(r);
        }
    }

    /// Waits until rank `r` has arrived at the current call: spins a while, then sleeps on
    /// the generation word until an arrival changes it.
    fn wait_for(&self, r: usize) {
        let counter = self.arrival(r);
        for _ in 0..self.spins {
            if counter.load(Ordering::Acquire) >= self.calls {
                return;
            }
            std::hint::spin_loop();
        }
        loop {
            let generation = self.generation().load(Ordering::SeqCst);
            self.sleepers().fetch_add(1, Ordering::SeqCst);
            if counter.load(Ordering::SeqCst) >= self.calls {
                self.sleepers().fetch_sub(1, Ordering::SeqCst);
                return;
            }
            futex::wait(self.generation(), generation, SLEEP);
            self.sleepers().fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The word that every arrival increments and sleeping ranks wait on, in rank 0's line.
    fn generation(&self) -> &AtomicU32 {
        // SAFETY: as for `arrival`; the word sits at byte 24 of rank 0's line, after the
        // counter and the two values.
        unsafe { &*self.base.add(24).cast::<AtomicU32>() }
    }

    /// The number of ranks sleeping on [`NodeMemory::generation`], in rank 0's line.
    fn sleepers(&self) -> &AtomicU32 {
        // SAFETY: as for `generation`, at byte 28.
        unsafe { &*self.base.add(28).cast::<AtomicU32>() }
    }

    /// Rank `r`'s `len` values in slot set `set`.
    fn slot<T: Copy>(&self, set: usize, r: usize, len: usize) -> &[T] {
        debug_assert!(len * std::mem::size_of::<T>() <= self.slot_bytes);
        // SAFETY: rank `r` wrote `len` values of `T` there before its arrival, which the
        // caller has waited for, and writes that set again only after this rank's next
        // arrival.
        unsafe { std::slice::from_raw_parts(self.slot_ptr(set, r).cast::<T>(), len) }
    }

    /// Writes into `sum[range]` the element-wise sum of `send[range]` over the ranks, added
    /// in rank order, which every rank does alike. Every rank publishes its whole vector, but
    /// adds only `range`.
    pub fn all_reduce_in<T: Scalar>(&mut self, send: &[T], sum: &mut [T], range: Range<usize>) {
        let set = self.publish(send, send.len());
        self.add_slots(set, range, sum);
    }

    /// Lets `fill` write this rank's vector straight into its slot, then writes the sum of
    /// the vectors into `sum[range]` and returns the sum of the values that `fill` returned,
    /// which travel in the ranks' header lines.
    pub fn all_reduce_filled<T: Scalar>(
        &mut self,
        fill: &mut dyn FnMut(&mut [T]) -> f64,
        sum: &mut [T],
        range: Range<usize>,
    ) -> f64 {
        let len = sum.len();
        let set = self.next_set(std::mem::size_of_val(sum));
        // SAFETY: as for the copy in `publish`: the slot holds `len` values of `T`, and no
        // other rank reads it before this rank arrives.
        let mine = unsafe {
            std::slice::from_raw_parts_mut(self.slot_ptr(set, self.rank).cast::<T>(), len)
        };
        let value = fill(mine);
        self.value(set, self.rank)
            .store(value.to_bits(), Ordering::Relaxed);
        self.arrive();
        self.add_slots(set, range, sum);
        (0..self.size)
            .map(|r| f64::from_bits(self.value(set, r).load(Ordering::Relaxed)))
            .fold(0.0, |total, v| total + v)
    }

    /// Copies every rank's [`update_range`] of `values` to the other ranks.
    pub fn share_parts<T: Copy>(&mut self, values: &mut [T]) {
        let n = values.len();
        let block = update_range(n, 0, self.size).len();
        let set = self.publish(&values[update_range(n, self.rank, self.size)], block);
        for r in (0..self.size).filter(|&r| r != self.rank) {
            let part = update_range(n, r, self.size);
            let len = part.len();
            values[part].copy_from_slice(self.slot(set, r, len));
        }
    }

    /// Replaces `values` with their element-wise sum over the ranks.
    pub fn all_reduce_in_place<T: Scalar>(&mut self, values: &mut [T]) {
        let set = self.publish(values, values.len());
        self.add_slots(set, 0..values.len(), values);
    }

    /// Writes the sum of `range` of the slots of set `set` into `sum[range]`: the first two
    /// slots in one pass, then each further one.
    fn add_slots<T: Scalar>(&self, set: usize, range: Range<usize>, sum: &mut [T]) {
        let n = range.end;
        let sum = &mut sum[range.clone()];
        if self.size == 1 {
            sum.copy_from_slice(&self.slot(set, 0, n)[range]);
            return;
        }
        let first = &self.slot::<T>(set, 0, n)[range.clone()];
        let second = &self.slot::<T>(set, 1, n)[range.clone()];
        for ((s, &a), &b) in sum.iter_mut().zip(first).zip(second) {
            *s = a + b;
        }
        for r in 2..self.size {
            for (s, &v) in sum
                .iter_mut()
                .zip(&self.slot::<T>(set, r, n)[range.clone()])
            {
                *s += v;
            }
        }
    }

    /// Writes every rank's `send` into `all`, in rank order.
    pub fn all_gather<T: Copy>(&mut self, send: &[T], all: &mut [T]) {
        let set = self.publish(send, send.len());
        let n = send.len();
        for (r, block) in all.chunks_mut(n.max(1)).enumerate().take(self.size) {
            block.copy_from_slice(self.slot(set, r, n));
        }
    }

    /// Copies rank 0's `values` into `values` on every rank.
    pub fn broadcast<T: Copy>(&mut self, values: &mut [T]) {
        let mine: &[T] = if self.rank == 0 { values } else { &[] };
        let set = self.publish(mine, values.len());
        if self.rank != 0 {
            values.copy_from_slice(self.slot(set, 0, values.len()));
        }
    }

    /// Returns once every rank has called it.
    pub fn barrier(&mut self) {
        self.publish::<u8>(&[], 0);
    }
}

impl Drop for NodeMemory {
    fn drop(&mut self) {
        self.free();
    }
}

/// The window size in MiB that [`SIZE_VARIABLE`] sets on this rank, or the default.
fn window_mib() -> u64 {
    let Ok(text) = std::env::var(SIZE_VARIABLE) else {
        return DEFAULT_WINDOW_MIB;
    };
    match text.trim().parse::<u64>() {
        Ok(mib) => mib,
        Err(_) => {
            tracing::warn!(
                value = text.as_str(),
                "invalid {SIZE_VARIABLE}: expected a window size in MiB, or 0 for MPI's \
                 collectives; using {DEFAULT_WINDOW_MIB} MiB"
            );
            DEFAULT_WINDOW_MIB
        }
    }
}

/// Sleeping on a word of shared memory until another process changes it: a futex on Linux,
/// short sleeps elsewhere.
mod futex {
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    /// Sleeps while `word` holds `expected`, for at most `limit`.
    #[cfg(target_os = "linux")]
    pub fn wait(word: &AtomicU32, expected: u32, limit: Duration) {
        let timeout = libc::timespec {
            tv_sec: limit.as_secs() as libc::time_t,
            tv_nsec: limit.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `word` is a live, aligned 32-bit word in memory that all ranks map, and
        // FUTEX_WAIT without the private flag works across processes. It returns at once
        // when the word no longer holds `expected`; errors and early returns only make the
        // caller look at the counters again.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                &timeout as *const libc::timespec,
            );
        }
    }

    /// Wakes every process sleeping on `word`.
    #[cfg(target_os = "linux")]
    pub fn wake_all(word: &AtomicU32) {
        // SAFETY: as for `wait`.
        unsafe {
            libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn wait(word: &AtomicU32, expected: u32, limit: Duration) {
        use std::sync::atomic::Ordering;
        if word.load(Ordering::SeqCst) == expected {
            std::thread::sleep(limit.min(Duration::from_micros(50)));
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn wake_all(_word: &AtomicU32) {}
}
