//! The process group of `csrc/dist.cpp` (c10d's TCPStore and ProcessGroupGloo / NCCL) behind a
//! safe wrapper. Every call returns the C++ side's error as one line; none panics.
use anyhow::{bail, Result};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::time::Duration;
use tch::Tensor;

/// Tensors per collective bucket, in bytes (DistributedDataParallel's default bucket size).
const BUCKET_BYTES: i64 = 25 << 20;

#[repr(C)]
struct StzGroup {
    _private: [u8; 0],
}

extern "C" {
    fn stz_dist_create(
        rank: c_int,
        world: c_int,
        addr: *const c_char,
        port: c_int,
        timeout_ms: i64,
        cuda: c_int,
        err: *mut *mut c_char,
    ) -> *mut StzGroup;
    fn stz_dist_all_reduce_mean(
        g: *mut StzGroup,
        tensors: *mut *mut c_void,
        n: usize,
        bucket_bytes: i64,
        err: *mut *mut c_char,
    ) -> c_int;
    fn stz_dist_all_reduce_grads(
        g: *mut StzGroup,
        params: *mut *mut c_void,
        n: usize,
        bucket_bytes: i64,
        err: *mut *mut c_char,
    ) -> c_int;
    fn stz_dist_broadcast(
        g: *mut StzGroup,
        tensors: *mut *mut c_void,
        n: usize,
        root: c_int,
        bucket_bytes: i64,
        err: *mut *mut c_char,
    ) -> c_int;
    fn stz_dist_barrier(g: *mut StzGroup, err: *mut *mut c_char) -> c_int;
    fn stz_dist_nccl_available() -> c_int;
    fn stz_dist_destroy(g: *mut StzGroup);
    fn stz_dist_free_error(err: *mut c_char);
}

/// Where and how a process joins: its rank among `world` processes, the rendezvous address
/// (rank 0 listens there) and the timeout of the rendezvous and of every collective.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    pub rank: usize,
    pub world: usize,
    pub addr: String,
    pub port: u16,
    pub timeout: Duration,
}

/// A joined process group. Collectives are blocking; a peer that died or stalls makes them fail
/// (a closed connection at once, else after the timeout).
pub struct Group {
    ptr: *mut StzGroup,
    what: String,
}

// SAFETY: the group is only used through `&self` calls that c10d's backends serialise; it is
// handed between threads only as a whole (the trainer runs on one thread).
unsafe impl Send for Group {}
unsafe impl Sync for Group {}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

/// The error string of a failed call, freed.
fn take_error(err: *mut c_char, what: &str) -> anyhow::Error {
    if err.is_null() {
        return anyhow::anyhow!("{what}: failed without a message");
    }
    // SAFETY: a NUL-terminated string malloc'd by the shim, freed once here.
    let text = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { stz_dist_free_error(err) };
    anyhow::anyhow!("{what}: {text}")
}

/// Whether this build has ProcessGroupNCCL (CUDA devices).
pub fn nccl_available() -> bool {
    // SAFETY: no arguments, no state.
    unsafe { stz_dist_nccl_available() != 0 }
}

impl Group {
    /// Joins the group: rank 0 serves the TCPStore at `addr:port`, every rank connects, then
    /// the backend (NCCL for CUDA tensors, else Gloo) connects the ranks pairwise.
    pub fn join(rv: &Rendezvous, cuda: bool) -> Result<Self> {
        let what = format!(
            "process group (rank {} of {}, {}:{}, {})",
            rv.rank,
            rv.world,
            rv.addr,
            rv.port,
            if cuda { "nccl" } else { "gloo" }
        );
        let Ok(addr) = CString::new(rv.addr.clone()) else {
            bail!("{what}: the address has a NUL byte");
        };
        let mut err = std::ptr::null_mut();
        // SAFETY: valid C string and out-pointer; the shim catches every C++ exception.
        let ptr = unsafe {
            stz_dist_create(
                rv.rank as c_int,
                rv.world as c_int,
                addr.as_ptr(),
                rv.port as c_int,
                rv.timeout.as_millis().min(i64::MAX as u128) as i64,
                cuda as c_int,
                &mut err,
            )
        };
        if ptr.is_null() {
            return Err(take_error(err, &format!("cannot join the {what}")));
        }
        Ok(Self { ptr, what })
    }

    fn check(&self, rc: c_int, err: *mut c_char, op: &str) -> Result<()> {
        if rc == 0 {
            return Ok(());
        }
        Err(take_error(err, &format!("{op} in the {}", self.what)))
    }

    /// Replaces each tensor by its mean over the ranks (flat buckets of one device and dtype).
    pub fn all_reduce_mean(&self, tensors: &[Tensor]) -> Result<()> {
        let mut ptrs = pointers(tensors);
        let mut err = std::ptr::null_mut();
        // SAFETY: the pointers are live `at::Tensor*`s (tch's C_tensor) for the call.
        let rc = unsafe {
            stz_dist_all_reduce_mean(
                self.ptr,
                ptrs.as_mut_ptr(),
                ptrs.len(),
                BUCKET_BYTES,
                &mut err,
            )
        };
        self.check(rc, err, "all-reduce")
    }

    /// Replaces the gradient of each parameter by its mean over the ranks (a parameter without
    /// one takes part with zeros).
    pub fn all_reduce_grads(&self, params: &[Tensor]) -> Result<()> {
        let mut ptrs = pointers(params);
        let mut err = std::ptr::null_mut();
        // SAFETY: as in all_reduce_mean.
        let rc = unsafe {
            stz_dist_all_reduce_grads(
                self.ptr,
                ptrs.as_mut_ptr(),
                ptrs.len(),
                BUCKET_BYTES,
                &mut err,
            )
        };
        self.check(rc, err, "gradient all-reduce")
    }

    /// Copies rank `root`'s values of the tensors into every rank's (in place).
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        let mut ptrs = pointers(tensors);
        let mut err = std::ptr::null_mut();
        // SAFETY: as in all_reduce_mean.
        let rc = unsafe {
            stz_dist_broadcast(
                self.ptr,
                ptrs.as_mut_ptr(),
                ptrs.len(),
                root as c_int,
                BUCKET_BYTES,
                &mut err,
            )
        };
        self.check(rc, err, "broadcast")
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        let mut err = std::ptr::null_mut();
        // SAFETY: a live group and an out-pointer.
        let rc = unsafe { stz_dist_barrier(self.ptr, &mut err) };
        self.check(rc, err, "barrier")
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: created by stz_dist_create, destroyed once.
        unsafe { stz_dist_destroy(self.ptr) }
    }
}

fn pointers(tensors: &[Tensor]) -> Vec<*mut c_void> {
    tensors.iter().map(|t| t.as_ptr() as *mut c_void).collect()
}
