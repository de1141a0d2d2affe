//! The MPI group: every rank of `MPI_COMM_WORLD`, through the `mpi` crate.

use super::shared::NodeMemory;
use super::{reduce_filled_by_parts, update_range, Collective, Watchdog};
use crate::tensor::Scalar;
use crate::{Error, Result};
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Exit code of a job that a rank aborts after a collective timed out.
const TIMEOUT_EXIT_CODE: i32 = 3;

/// `MPI_COMM_WORLD`, with a watchdog around every collective.
///
/// MPI is initialised with `MPI_THREAD_SERIALIZED`, so calls may come from any thread (the
/// training loop runs on a rayon worker) but never at the same time: each call holds `lock`.
pub struct Mpi {
    lock: Mutex<Calls>,
    rank: usize,
    size: usize,
    watchdog: Watchdog,
}

struct Calls {
    world: SimpleCommunicator,
    /// Send buffers, because `MPI_Allreduce` here reads and writes separate buffers.
    send_f32: Vec<f32>,
    send_f64: Vec<f64>,
    /// Memory shared by all ranks when they run on one machine, which carries every
    /// collective instead of MPI's own.
    node: Option<NodeMemory>,
    /// Whether a collective has gone through MPI although the ranks share memory.
    over_mpi: bool,
    /// Finalises MPI when dropped; declared last so that it drops after `world`.
    _universe: Universe,
}

impl Calls {
    /// The shared memory, when the ranks have it and slots of `bytes` bytes fit in it.
    fn node_for(&mut self, bytes: usize) -> Option<&mut NodeMemory> {
        let fits = self.node.as_ref().is_some_and(|node| node.fits(bytes));
        self.over_mpi |= !fits;
        self.node.as_mut().filter(|_| fits)
    }
}

// SAFETY: the communicator and universe are handles into the MPI library, which was
// initialised with MPI_THREAD_SERIALIZED, and every call through them holds `lock`.
unsafe impl Send for Calls {}

impl Mpi {
    /// Initialises MPI. A rank that waits longer than `timeout` in one collective prints an
    /// error and aborts the whole job.
    pub fn init(timeout: Duration) -> Result<Mpi> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| {
                Error::Unsupported("MPI was initialised already in this process".into())
            })?;
        if threading < Threading::Serialized {
            return Err(Error::Unsupported(format!(
                "the MPI library offers thread level {threading:?}, but gradus needs Serialized; \
                 use an MPI build with thread support (Open MPI has it by default)"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let watchdog = Watchdog::start(timeout, move |operation, timeout| {
            abort_after_timeout(rank, size, operation, timeout)
        });
        let node = NodeMemory::new(&world);
        let calls = Calls {
            world,
            send_f32: Vec::new(),
            send_f64: Vec::new(),
            node,
            over_mpi: false,
            _universe: universe,
        };
        Ok(Mpi {
            lock: Mutex::new(calls),
            rank,
            size,
            watchdog,
        })
    }

    /// Names the ways the collectives have gone so far: `shared memory` when all ranks run
    /// on one machine, `MPI` otherwise, and both when some vectors were too long for the
    /// shared window.
    pub fn transports(&self) -> &'static str {
        let calls = self.calls();
        match (&calls.node, calls.over_mpi) {
            (Some(_), false) => "shared memory",
            (Some(_), true) => "shared memory and MPI",
            (None, _) => "MPI",
        }
    }

    fn calls(&self) -> MutexGuard<'_, Calls> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Prints why the job stops and aborts every rank with `MPI_Abort`.
fn abort_after_timeout(rank: usize, size: usize, operation: &str, timeout: Duration) {
    eprintln!(
        "error: rank {rank} of {size} waited {} s in {operation} for the other ranks; one of \
         them has exited or stalled. Aborting the job (raise --rank-timeout if a rank is only \
         slow)",
        timeout.as_secs_f64()
    );
    // MPI_Abort may itself wait on a stalled runtime, so a second thread ends this process
    // if the abort has not within ten seconds.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(10));
        std::process::exit(TIMEOUT_EXIT_CODE);
    });
    SimpleCommunicator::world().abort(TIMEOUT_EXIT_CODE);
}

/// Shares every rank's [`update_range`] of `values` with an all-gather of equal blocks,
/// through `buffer`, which keeps its allocation from call to call.
fn share_parts_over<T: Scalar + Equivalence>(
    world: &SimpleCommunicator,
    buffer: &mut Vec<T>,
    values: &mut [T],
    rank: usize,
    size: usize,
) {
    let n = values.len();
    let block = update_range(n, 0, size).len();
    let mine = update_range(n, rank, size);
    // The buffer holds this rank's block, then the gathered blocks of all ranks.
    buffer.clear();
    buffer.resize(block * (size + 1), T::zero());
    let (send, all) = buffer.split_at_mut(block);
    send[..mine.len()].copy_from_slice(&values[mine]);
    world.all_gather_into(&send[..], all);
    for r in 0..size {
        let part = update_range(n, r, size);
        let start = r * block;
        values[part.clone()].copy_from_slice(&all[start..start + part.len()]);
    }
}

/// An element type of MPI's collectives, with the send buffer that [`Calls`] keeps for it.
trait Buffered: Scalar + Equivalence {
    fn buffer(calls: &mut Calls) -> &mut Vec<Self>;
}

impl Buffered for f32 {
    fn buffer(calls: &mut Calls) -> &mut Vec<f32> {
        &mut calls.send_f32
    }
}

impl Buffered for f64 {
    fn buffer(calls: &mut Calls) -> &mut Vec<f64> {
        &mut calls.send_f64
    }
}

/// The collectives for either element type: through the shared window when the ranks have
/// one and the vector fits, through MPI otherwise. Every call holds the lock and arms the
/// watchdog while it waits.
impl Mpi {
    fn reduce_in_place<T: Buffered>(&self, values: &mut [T]) {
        let mut calls = self.calls();
        let _armed = self.watchdog.guard("allreduce");
        if let Some(node) = calls.node_for(std::mem::size_of_val(values)) {
            node.all_reduce_in_place(values);
            return;
        }
        // `MPI_Allreduce` here reads and writes separate buffers.
        let mut send = std::mem::take(T::buffer(&mut calls));
        send.clear();
        send.extend_from_slice(values);
        calls
            .world
            .all_reduce_into(&send[..], values, SystemOperation::sum());
        *T::buffer(&mut calls) = send;
    }

    fn reduce_into<T: Buffered>(&self, send: &[T], sum: &mut [T], range: Range<usize>) {
        let mut calls = self.calls();
        let _armed = self.watchdog.guard("allreduce");
        match calls.node_for(std::mem::size_of_val(send)) {
            Some(node) => node.all_reduce_in(send, sum, range),
            None => calls
                .world
                .all_reduce_into(send, sum, SystemOperation::sum()),
        }
    }

    fn reduce_filled<T: Buffered>(
        &self,
        fill: &mut dyn FnMut(&mut [T]) -> f64,
        scratch: &mut Vec<T>,
        sum: &mut [T],
        range: Range<usize>,
    ) -> f64 {
        let mut calls = self.calls();
        if let Some(node) = calls.node_for(std::mem::size_of_val(sum)) {
            let _armed = self.watchdog.guard("allreduce");
            return node.all_reduce_filled(fill, sum, range);
        }
        drop(calls);
        let reduce = |send: &[T], sum: &mut [T], range| self.reduce_into(send, sum, range);
        reduce_filled_by_parts(fill, scratch, sum, range, reduce, |v| {
            self.reduce_in_place(v)
        })
    }

    fn share<T: Buffered>(&self, values: &mut [T]) {
        let mut calls = self.calls();
        let _armed = self.watchdog.guard("allgather");
        if let Some(node) = calls.node_for(std::mem::size_of_val(values)) {
            node.share_parts(values);
            return;
        }
        let mut buffer = std::mem::take(T::buffer(&mut calls));
        share_parts_over(&calls.world, &mut buffer, values, self.rank, self.size);
        *T::buffer(&mut calls) = buffer;
    }

    fn gather<T: Buffered>(&self, send: &[T], all: &mut [T]) {
        let mut calls = self.calls();
        let _armed = self.watchdog.guard("allgather");
        match calls.node_for(std::mem::size_of_val(send)) {
            Some(node) => node.all_gather(send, all),
            None => calls.world.all_gather_into(send, all),
        }
    }

    fn broadcast<T: Buffered>(&self, values: &mut [T]) {
        let mut calls = self.calls();
        let _armed = self.watchdog.guard("broadcast");
        match calls.node_for(std::mem::size_of_val(values)) {
            Some(node) => node.broadcast(values),
            None => calls.world.process_at_rank(0).broadcast_into(values),
        }
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) {
        self.reduce_in_place(values);
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) {
        self.reduce_in_place(values);
    }

    fn all_reduce_sum_f32_from(&self, send: &[f32], sum: &mut [f32]) {
        self.reduce_into(send, sum, 0..send.len());
    }

    fn all_reduce_sum_f64_from(&self, send: &[f64], sum: &mut [f64]) {
        self.reduce_into(send, sum, 0..send.len());
    }

    fn all_reduce_sum_f32_in(&self, send: &[f32], sum: &mut [f32], range: Range<usize>) {
        self.reduce_into(send, sum, range);
    }

    fn all_reduce_sum_f64_in(&self, send: &[f64], sum: &mut [f64], range: Range<usize>) {
        self.reduce_into(send, sum, range);
    }

    fn all_reduce_filled_f32(
        &self,
        fill: &mut dyn FnMut(&mut [f32]) -> f64,
        scratch: &mut Vec<f32>,
        sum: &mut [f32],
        range: Range<usize>,
    ) -> f64 {
        self.reduce_filled(fill, scratch, sum, range)
    }

    fn all_reduce_filled_f64(
        &self,
        fill: &mut dyn FnMut(&mut [f64]) -> f64,
        scratch: &mut Vec<f64>,
        sum: &mut [f64],
        range: Range<usize>,
    ) -> f64 {
        self.reduce_filled(fill, scratch, sum, range)
    }

    // NOTE: ranks on several machines do not split their updates. Splitting would replace
    // the allreduce by a reduce-scatter and an all-gather of the parameters, which moves as
    // much data and halves the update's work, but it has not been measured across machines.
    fn splits_updates(&self, bytes: usize) -> bool {
        self.calls()
            .node
            .as_ref()
            .is_some_and(|node| node.fits(bytes))
    }

    fn share_parts_f32(&self, values: &mut [f32]) {
        self.share(values);
    }

    fn share_parts_f64(&self, values: &mut [f64]) {
        self.share(values);
    }

    fn all_gather_f32(&self, send: &[f32], all: &mut [f32]) {
        self.gather(send, all);
    }

    fn all_gather_f64(&self, send: &[f64], all: &mut [f64]) {
        self.gather(send, all);
    }

    fn broadcast_f32(&self, values: &mut [f32]) {
        self.broadcast(values);
    }

    fn broadcast_f64(&self, values: &mut [f64]) {
        self.broadcast(values);
    }

    fn barrier(&self) {
        let mut calls = self.calls();
        let _armed = self.watchdog.guard("barrier");
        match calls.node_for(0) {
            Some(node) => node.barrier(),
            None => calls.world.barrier(),
        }
    }
}
