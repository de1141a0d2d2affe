//! Checks that first-order methods allocate nothing in `step` after the first call.
//!
//! This is its own test binary because it installs a counting global allocator, which would
//! otherwise count the allocations of every unit test in the library.

use gradus::methods::{FirstOrderSpec, StepContext};
use gradus::objective::Objective;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting allocations per thread so that parallel tests do not
/// disturb each other's counts.
struct CountingAllocator;

fn count_allocation() {
    // `try_with` fails only while the thread is being torn down; those calls are not counted.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// contract of `GlobalAlloc` is met exactly as `System` meets it.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// `f(w) = ½ ‖w − 1‖²`, which allocates nothing.
struct Quadratic {
    dim: usize,
}

impl Objective<f32> for Quadratic {
    fn dim(&self) -> usize {
        self.dim
    }

    fn value(&mut self, theta: &[f32]) -> f64 {
        theta
            .iter()
            .map(|&w| 0.5 * (f64::from(w) - 1.0).powi(2))
            .sum()
    }

    fn gradient(&mut self, theta: &[f32], grad: &mut [f32]) -> f64 {
        for (g, &w) in grad.iter_mut().zip(theta) {
            *g = w - 1.0;
        }
        self.value(theta)
    }

    fn evaluations(&self) -> u64 {
        0
    }
}

#[test]
fn step_allocates_only_at_first_call() {
    for &name in FirstOrderSpec::names() {
        let mut spec = FirstOrderSpec::default_for(name).unwrap();
        spec.set_learning_rate(0.01);
        let mut method = spec.build::<f32>().unwrap();
        let mut objective = Quadratic { dim: 1000 };
        let mut w = vec![0.0_f32; 1000];
        let context = StepContext::default();

        let before_first = allocations();
        method.step(&mut w, &mut objective, &context).unwrap();
        assert!(
            allocations() > before_first,
            "{name}: first step allocated no state"
        );

        let before = allocations();
        for _ in 0..20 {
            method.step(&mut w, &mut objective, &context).unwrap();
        }
        let after = allocations();
        assert_eq!(after - before, 0, "{name}: later steps allocated");
    }
}
