//! Handing a tensor's memory back to the kernel without freeing it: on Linux the whole pages of a
//! CPU tensor's buffer are discarded (`madvise(MADV_DONTNEED)`), so they stop counting towards
//! the process's resident memory and read back as zeros when next touched. The KV cache does this
//! to its pools while the engine is idle, so an in-process trainer's backward gets that memory
//! between rollouts (an allocation freed on the engine thread would stay in that thread's glibc
//! arena, out of the trainer's reach).
//!
//! The one `unsafe` call is sound because [`candle_core::InplaceOp1`] hands the op the storage
//! mutably (no other reference to the buffer exists while it runs), only pages lying wholly
//! inside the buffer are discarded, and zero bytes are a valid value of every float dtype.

use candle_core::{CpuStorage, Layout, Tensor};

/// Discards the whole pages of `t`'s buffer (CPU tensors on Linux; elsewhere nothing happens).
/// Afterwards those elements read as zero; elements on the partial pages at either end keep
/// their values. Returns the bytes discarded.
pub fn discard(t: &Tensor) -> candle_core::Result<usize> {
    if !t.device().is_cpu() {
        return Ok(0);
    }
    let op = DiscardPages::default();
    t.inplace_op1(&op)?;
    Ok(op.bytes.get())
}

#[derive(Default)]
struct DiscardPages {
    bytes: std::cell::Cell<usize>,
}

impl candle_core::InplaceOp1 for DiscardPages {
    fn name(&self) -> &'static str {
        "oxrl-discard-pages"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, _layout: &Layout) -> candle_core::Result<()> {
        let (ptr, len) = match storage {
            CpuStorage::F32(v) => (v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(&v[..])),
            CpuStorage::F64(v) => (v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(&v[..])),
            CpuStorage::BF16(v) => (v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(&v[..])),
            CpuStorage::F16(v) => (v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(&v[..])),
            _ => return Ok(()),
        };
        self.bytes.set(discard_range(ptr, len));
        Ok(())
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn discard_range(ptr: *mut u8, len: usize) -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => return 0,
    };
    let start = (ptr as usize).next_multiple_of(page);
    let end = (ptr as usize + len) / page * page;
    if end <= start {
        return 0;
    }
    // SAFETY: [start, end) is page-aligned and lies inside a live buffer this op holds exclusively
    // (see the module doc); MADV_DONTNEED on private anonymous memory only replaces its pages with
    // zero-filled ones on next access.
    let ok = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    if ok == 0 {
        end - start
    } else {
        0
    }
}

#[cfg(not(target_os = "linux"))]
fn discard_range(_ptr: *mut u8, _len: usize) -> usize {
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn discarded_pages_read_as_zero_and_the_edges_keep_their_values() {
        let n = 1 << 20;
        let t = Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).unwrap();
        let bytes = discard(&t).unwrap();
        let v = t.to_vec1::<f32>().unwrap();
        let zeros = v.iter().filter(|&&x| x == 0.0).count();
        if cfg!(target_os = "linux") {
            assert!(
                bytes >= 4 * n - 2 * 65536,
                "discarded {bytes} bytes of {}",
                4 * n
            );
            assert_eq!(zeros * 4, bytes);
            assert!(v.iter().all(|&x| x == 0.0 || x == 1.0));
        } else {
            assert_eq!((bytes, zeros), (0, 0));
        }
        // Still a working tensor: writes land and read back.
        let t2 = (t + 2.0).unwrap();
        assert!(t2.to_vec1::<f32>().unwrap().iter().all(|&x| x >= 2.0));
    }
}
