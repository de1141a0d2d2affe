//! The MPI group: every rank of `MPI_COMM_WORLD`, through the `mpi` crate.

use super::shared::NodeMemory;
use super::{update_range, Collective, Watchdog};
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

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) {
        let mut calls = self.calls();
        if let Some(node) = calls.node_for(std::mem::size_of_val(values)) {
            let _armed = self.watchdog.guard("allreduce");
            node.all_reduce_in_place(values);
            return;
        }
        let Calls {
            world, send_f32, ..
        } = &mut *calls;
        send_f32.clear();
        send_f32.extend_from_slice(values);
        let _armed = self.watchdog.guard("allreduce");
        world.all_reduce_into(&send_f32[..], values, SystemOperation::sum());
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) {
        let mut calls = self.calls();
        if let Some(node) = calls.node_for(std::mem::size_of_val(values)) {
            let _armed = self.watchdog.guard("allreduce");
            node.all_reduce_in_place(values);
            return;
        }
        let Calls {
            world, send_f64, ..
        } = &mut *calls;
        send_f64.clear();
        send_f64.extend_from_slice(values);
        let _armed = self.watchdog.guard("allreduce");
        world.all_reduce_into(&send_f64[..], values, SystemOperation::sum());
    }

    fn all_reduce_sum_f32_from(&self, send: &[f32], sum: &mut [f32]) {
        let mut calls = self.calls();
        if let Some(node) = calls.node_for(std::mem::size_of_val(send)) {
            let _armed = self.watchdog.guard("allreduce");
            node.all_reduce(send, sum);
            return;
        }
        let _armed = self.watchdog.guard("allreduce");
        calls
            .world
            .all_reduce_into(send, sum, SystemOperation::sum());
    }

    fn all_reduce_sum_f64_from(&self, send: &[f64], sum: &mut [f64]) {
        let mut calls = self.calls();
        if let Some(node) = calls.node_for(std::mem::size_of_val(send)) {
            let _armed = self.watchdog.guard("allreduce");
            node.all_reduce(send, sum);
            return;
        }
        let _armed = self.watchdog.guard("allreduce");
        calls
            .world
            .all_reduce_into(send, sum, SystemOperation::sum());
    }

    fn all_reduce_sum_f32_in(&self, send: &[f32], sum: &mut [f32], range: Range<usize>) {
        let mut calls = self.calls();
        if let Some(node) = calls.node_for(std::mem::size_of_val(send)) {
            let _armed = self.watchdog.guard("allreduce");
            node.all_reduce_in(send, sum, range);
            return;
        }
        let _armed = self.watchdog.guard("allreduce");
        calls
            .world
            .all_reduce_into(send, sum, SystemOperation::sum());
    }

    fn all_reduce_sum_f64_in(&self, send: &[f64], sum: &mut [f64], range: Range<usize>) {
        let mut calls = self.calls();
        if let Some(node) = calls.node_for(std::mem::size_of_val(send)) {
            let _armed = self.watchdog.guard("allreduce");
            node.all_reduce_in(send, sum, range);
            return;
        }
        let _armed = self.watchdog.guard("allreduce");
        calls
            .world
            .all_reduce_into(send, sum, SystemOperation::sum());
    }

    fn all_reduce_filled_f32(
        &self,
        fill: &mut dyn FnMut(&mut [f32]) -> f64,
        scratch: &mut Vec<f32>,
        sum: &mut [f32],
        range: Range<usize>,
    ) -> f64 {
        let mut calls = self.calls();
        if let Some(node) = calls.node_for(std::mem::size_of_val(sum)) {
            let _armed = self.watchdog.guard("allreduce");
            return node.all_reduce_filled(fill, sum, range);
        }
        drop(calls);
        scratch.resize(sum.len(), 0.0);
        let value = fill(scratch);
        self.all_reduce_sum_f32_in(scratch, sum, range);
        let mut total = [value];
        self.all_reduce_sum_f64(&mut total);
        total[0]
    }

    // NOTE: ranks on several machines do not split their updates. Splitting would replace
    // the allreduce by a reduce-scatter and an all-gather of the parameters, which moves as
    // much data and halves the update's work, but it has not been measured across machines.
    fn splits_updates(&self, bytes: usize) -> bool {
        self.calls().node.as_ref().is_some_and(|node| node.fits(bytes))
    }

    fn share_parts_f32(&self, values: &mut [f32]) {
        let mut calls = self.calls();
        let _armed = self.watchdog.guard("allgather");
        if let Some(node) = calls.node_for(std::mem::size_of_val(values)) {
            node.share_parts(values);
            return;
        }
        let Calls {
            world, send_f32, ..
        } = &mut *calls;
        share_parts_over(world, send_f32, values, self.rank, self.size);
    }

    fn all_reduce_filled_f64(
        &self,
        fill: &mut dyn FnMut(&mut [f64]) -> f64,
        scratch: &mut Vec<f64>,
        sum: &mut [f64],
        range: Range<usize>,
    ) -> f64 {
        let mut calls = self.calls();
        if let Some(node) = calls.node_for(std::mem::size_of_val(sum)) {
            let _armed = self.watchdog.guard("allreduce");
            return node.all_reduce_filled(fill, sum, range);
        }
        drop(calls);
        scratch.resize(sum.len(), 0.0);
        let value = fill(scratch);
        self.all_reduce_sum_f64_in(scratch, sum, range);
        let mut total = [value];
        self.all_reduce_sum_f64(&mut total);
        total[0]
    }

    fn share_parts_f64(&self, values: &mut [f64]) {
        let mut calls = self.calls();
        let _armed = self.watchdog.guard("allgather");
        if let Some(node) = calls.node_for(std::mem::size_of_val(values)) {
            node.share_parts(values);
            return;
        }
        let Calls {
            world, send_f64, ..
        } = &mut *calls;
        share_parts_over(world, send_f64, values, self.rank, self.size);
    }

    fn all_gather_f32(&self, send: &[f32], all: &mut [f32]) {
        let mut calls = self.calls();
        if let Some(node) = calls.node_for(std::mem::size_of_val(send)) {
            let _armed = self.watchdog.guard("allgather");
            node.all_gather(send, all);
            return;
        }
        let _armed = self.watchdog.guard("allgather");
        calls.world.all_gather_into(send, all);
    }

    fn all_gather_f64(&self, send: &[f64], all: &mut [f64]) {
        let mut calls = self.calls();
        if let Some(node) = calls.node_for(std::mem::size_of_val(send)) {
            let _armed = self.watchdog.guard("allgather");
            node.all_gather(send, all);
            return;
        }
        let _armed = self.watchdog.guard("allgather");
        calls.world.all_gather_into(send, all);
    }

    fn broadcast_f32(&self, values: &mut [f32]) {
        let mut calls = self.calls();
        if let Some(node) = calls.node_for(std::mem::size_of_val(values)) {
            let _armed = self.watchdog.guard("broadcast");
            node.broadcast(values);
            return;
        }
        let _armed = self.watchdog.guard("broadcast");
        calls.world.process_at_rank(0).broadcast_into(values);
    }

    fn broadcast_f64(&self, values: &mut [f64]) {
        let mut calls = self.calls();
        if let Some(node) = calls.node_for(std::mem::size_of_val(values)) {
            let _armed = self.watchdog.guard("broadcast");
            node.broadcast(values);
            return;
        }
        let _armed = self.watchdog.guard("broadcast");
        calls.world.process_at_rank(0).broadcast_into(values);
    }

    fn barrier(&self) {
        let mut calls = self.calls();
        if let Some(node) = calls.node_for(0) {
            let _armed = self.watchdog.guard("barrier");
            node.barrier();
            return;
        }
        let _armed = self.watchdog.guard("barrier");
        calls.world.barrier();
    }
}
