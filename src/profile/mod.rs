//! Where a command's time goes (`--profile`): wall-clock time per named stage, nested as the
//! stages are (a UNet call inside a denoising step inside `generate`), summed over calls.
//!
//! A stage is timed by [`scope`] (a guard) or [`time`] (a closure). Nothing is recorded until
//! [`enable`] is called, and a disabled scope costs one atomic load, so the stages stay in the
//! code for good. On CUDA, kernels run asynchronously: after [`on_device`] names a CUDA device,
//! every scope synchronises it when it ends, so a stage is charged for its own kernels (which
//! slows the run a little; profile figures are for shares, the benchmark's for speed). On the
//! CPU every libtorch op has finished when it returns.
//!
//! Stages are kept per thread's nesting: a scope opened on a worker thread (a data loader's)
//! starts a root of its own, and its time overlaps the main thread's.
mod table;

pub use table::{render, write_json};

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tch::Device;

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The CUDA device scopes synchronise, or -1.
static CUDA_DEVICE: AtomicI64 = AtomicI64::new(-1);
static STAGES: Mutex<Vec<Stage>> = Mutex::new(Vec::new());

thread_local! {
    /// The names of the scopes open on this thread, outermost first.
    static OPEN: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

/// One stage's totals: `path` is its name after its parents', joined by `/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub path: String,
    pub calls: u64,
    pub total_s: f64,
}

impl Stage {
    /// How deep the stage is nested (0 for a root).
    pub fn depth(&self) -> usize {
        self.path.matches('/').count()
    }

    /// Whether this stage is directly under the stage at `parent` (one level down).
    pub fn is_child_of(&self, parent: &str) -> bool {
        self.path
            .strip_prefix(parent)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|leaf| !leaf.contains('/'))
    }
}

/// Starts recording (for the rest of the process).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Names the device the models run on: scopes synchronise it when it is a CUDA device.
pub fn on_device(device: Device) {
    if let Device::Cuda(i) = device {
        CUDA_DEVICE.store(i as i64, Ordering::Relaxed);
    }
}

/// Times from now until the guard is dropped, as stage `name` under the scopes open on this
/// thread.
#[must_use = "the stage ends when the guard is dropped"]
pub fn scope(name: &'static str) -> Scope {
    if !enabled() {
        return Scope { start: None };
    }
    OPEN.with(|open| open.borrow_mut().push(name));
    Scope {
        start: Some(Instant::now()),
    }
}

/// Runs `f` as stage `name`.
pub fn time<T>(name: &'static str, f: impl FnOnce() -> T) -> T {
    let _scope = scope(name);
    f()
}

/// An open stage (see [`scope`]).
pub struct Scope {
    start: Option<Instant>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let Some(start) = self.start else {
            return;
        };
        let cuda = CUDA_DEVICE.load(Ordering::Relaxed);
        if cuda >= 0 {
            tch::Cuda::synchronize(cuda);
        }
        let seconds = start.elapsed().as_secs_f64();
        let path = OPEN.with(|open| {
            let mut open = open.borrow_mut();
            let path = open.join("/");
            open.pop();
            path
        });
        let mut stages = STAGES.lock().unwrap_or_else(|e| e.into_inner());
        match stages.iter_mut().find(|s| s.path == path) {
            Some(s) => {
                s.calls += 1;
                s.total_s += seconds;
            }
            None => stages.push(Stage {
                path,
                calls: 1,
                total_s: seconds,
            }),
        }
    }
}

/// The stages recorded so far, each after its parent (in the order they first ended, parents
/// moved in front of their children).
pub fn stages() -> Vec<Stage> {
    let recorded = STAGES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut out = Vec::with_capacity(recorded.len());
    // Roots in the order they ended; each followed by its subtree, children in the order they
    // first ended.
    fn push_tree(all: &[Stage], parent: Option<&str>, out: &mut Vec<Stage>) {
        for s in all {
            let is_child = match parent {
                None => s.depth() == 0,
                Some(p) => s.is_child_of(p),
            };
            if is_child {
                out.push(s.clone());
                push_tree(all, Some(&s.path), out);
            }
        }
    }
    push_tree(&recorded, None, &mut out);
    out
}

/// Forgets every stage recorded (tests; a command profiles once).
pub fn clear() {
    STAGES.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_per_thread_and_sum_their_calls() {
        enable();
        for _ in 0..2 {
            let _outer = scope("profile-test outer");
            time("inner", || {
                std::thread::sleep(std::time::Duration::from_millis(2))
            });
        }
        // A scope on another thread is a root of its own.
        std::thread::spawn(|| time("profile-test worker", || ()))
            .join()
            .unwrap();
        let all = stages();
        let at = |p: &str| all.iter().position(|s| s.path == p).expect(p);
        let (outer, inner) = (at("profile-test outer"), at("profile-test outer/inner"));
        assert!(outer < inner, "a parent comes before its children");
        assert_eq!(all[outer].calls, 2);
        assert_eq!(all[inner].calls, 2);
        assert!(all[inner].total_s >= 0.004 && all[inner].total_s <= all[outer].total_s);
        assert_eq!(all[inner].depth(), 1);
        assert_eq!(all[at("profile-test worker")].depth(), 0);
    }
}
