//! A training step of a ReLU MLP with SGD or Adam allocates nothing on the heap once its
//! buffers exist, checked with a global allocator that counts every allocation in this test
//! binary.

use gradus::methods::{MethodSpec, StepContext};
use gradus::nn::{self, Activation, Init, Loss, Mode, Network};
use gradus::objective::{Counter, GroupedObjective, DEFAULT_BATCH_GROUPS};
use gradus::tensor::{Cpu, Precision};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts allocations and reallocations, then defers to the system allocator.
struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Returns whether the f32 products run on the allocation-free AVX-512 kernels. Elsewhere
/// they go through the `gemm` crate, which allocates packing buffers per call.
fn allocation_free_kernels() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Takes steps of `method` on random batches and returns the allocations of the last
/// `counted`.
fn allocations_in_steps(
    method: &str,
    batch: usize,
    threads: usize,
    precision: Precision,
    counted: usize,
) -> usize {
    let (inputs, classes) = (784, 10);
    let specs = nn::mlp(&[256, 128], Activation::Relu, 0.0, classes);
    let kernels = Arc::new(Cpu::new(threads).with_precision(precision));
    let network = Network::<f32>::new(&[inputs], &specs, kernels).expect("valid network");
    let mut params = network.init_params(Init::Auto, 7);
    let mut spec = MethodSpec::default_for(method).expect("method is registered");
    spec.set_learning_rate(0.01).expect("valid learning rate");
    let mut method = spec.build::<f32>().expect("method builds");
    let counter = Arc::new(Counter::default());
    let x: Vec<f32> = (0..batch * inputs)
        .map(|i| (i % 255) as f32 / 255.0)
        .collect();
    let mut t = vec![0.0f32; batch * classes];
    for row in 0..batch {
        t[row * classes + row % classes] = 1.0;
    }

    let mut scratch = None;
    let warmup = 3;
    let mut before = 0;
    for step in 0..warmup + counted {
        if step == warmup {
            before = ALLOCATIONS.load(Ordering::SeqCst);
        }
        // The training loop's objective: the batch in groups on parallel threads.
        let mut objective = GroupedObjective::single(
            &network,
            Loss::SoftmaxCrossEntropy,
            &x,
            &t,
            DEFAULT_BATCH_GROUPS,
            Mode::Train,
            step as u64,
            Arc::clone(&counter),
            scratch.take(),
        );
        let context = StepContext {
            step: step as u64,
            ..StepContext::default()
        };
        let report = method.step(&mut params, &mut objective, &context);
        scratch = Some(objective.into_scratch());
        assert!(report.expect("step succeeds").loss.is_finite());
    }
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

// One test function, because the allocation counter is global and tests run in parallel.
#[test]
fn steps_allocate_nothing() {
    if !allocation_free_kernels() {
        eprintln!("skipped: this CPU lacks AVX-512, so products allocate in the gemm crate");
        return;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("thread pool");
    // Batch 32 runs the f32 forward products on dot tiles, batch 256 on packed broadcast
    // tiles; both split their larger products across the two threads. In bf16 the
    // conversion buffers grow during the warm-up steps and are reused afterwards.
    let mut precisions = vec![Precision::F32];
    if Precision::Bf16.is_supported() {
        precisions.push(Precision::Bf16);
    } else {
        eprintln!("bf16 skipped: this CPU lacks AVX-512 BF16");
    }
    // Adam's update splits across the two threads, so it is checked on both batches too.
    for method in ["sgd", "adam"] {
        for &precision in &precisions {
            for batch in [32, 256] {
                // Rayon's scheduler may allocate once in a while when a worker wakes under
                // load, so the test checks the fewest allocations of three measurements. An
                // allocation in the step itself shows in every measurement.
                let allocations = (0..3)
                    .map(|_| pool.install(|| allocations_in_steps(method, batch, 2, precision, 4)))
                    .min()
                    .unwrap_or(usize::MAX);
                assert_eq!(
                    allocations, 0,
                    "{method}, {precision}, batch {batch}: 4 steps allocated {allocations} times"
                );
            }
        }
    }
}
