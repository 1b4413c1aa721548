//! Memory for packed weights on 2 MiB pages.
//!
//! Token generation streams every packed weight once per token. With 4 KiB pages the
//! hardware prefetchers stop at each page boundary and every page costs a TLB miss;
//! a plain read test here ran at 56 GB/s on 4 KiB pages and 70 GB/s on 2 MiB pages (2
//! threads, `xtask bench`'s read test). Transparent huge pages are in `madvise` mode on
//! common distributions, and only a 2 MiB-aligned range can be backed by them, so
//! [`HugePageBlocks`] allocates its storage on a 2 MiB boundary and advises it
//! (`MADV_HUGEPAGE`) before writing anything there.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ptr::NonNull;

/// The huge page size this module aligns to.
pub const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the 2 MiB-aligned interior of `len` bytes at `start` with huge
/// pages. A hint: errors are ignored, and it does nothing off Linux.
pub fn advise_huge_pages(start: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        let start = start as usize;
        let (lo, hi) = (
            start.next_multiple_of(HUGE_PAGE),
            (start + len) / HUGE_PAGE * HUGE_PAGE,
        );
        if lo < hi {
            // SAFETY: MADV_HUGEPAGE changes only how the kernel backs the pages of
            // [lo, hi), never their contents or validity; the caller owns the range.
            let _ = unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, len);
}

/// A fixed-length slice of `Copy` blocks whose storage starts on a 2 MiB boundary when it
/// spans at least one huge page, advised for huge pages before it is written.
pub struct HugePageBlocks<T: Copy> {
    ptr: NonNull<T>,
    /// Elements written so far (all of them once [`HugePageBlocks::collect`] returns).
    len: usize,
    /// The allocation's layout; `None` for an empty buffer (nothing allocated).
    layout: Option<Layout>,
}

// SAFETY: the buffer owns its elements like a `Box<[T]>`, so it may move to or be shared
// with other threads whenever `T` may.
unsafe impl<T: Copy + Send> Send for HugePageBlocks<T> {}
// SAFETY: as above; `&HugePageBlocks` only hands out `&[T]`.
unsafe impl<T: Copy + Sync> Sync for HugePageBlocks<T> {}

impl<T: Copy> HugePageBlocks<T> {
    /// The first `len` items of `items`.
    ///
    /// # Panics
    /// When `items` has fewer than `len` items, or the size overflows.
    pub fn collect(len: usize, items: impl IntoIterator<Item = T>) -> Self {
        let bytes = len
            .checked_mul(size_of::<T>())
            .expect("buffer size overflows");
        let mut buf = HugePageBlocks {
            ptr: NonNull::dangling(),
            len: 0,
            layout: None,
        };
        if bytes == 0 {
            return buf;
        }
        let align = if bytes >= HUGE_PAGE {
            HUGE_PAGE
        } else {
            align_of::<T>()
        };
        let layout = Layout::from_size_align(bytes, align).expect("buffer layout");
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<T>()) else {
            handle_alloc_error(layout)
        };
        (buf.ptr, buf.layout) = (ptr, Some(layout));
        advise_huge_pages(raw, bytes);
        let mut items = items.into_iter();
        while buf.len < len {
            let item = items.next().expect("fewer items than the buffer's length");
            // SAFETY: `buf.len < len`, inside the allocation of `len` elements, aligned
            // for `T` (the layout's alignment is at least `align_of::<T>()`).
            unsafe { buf.ptr.as_ptr().add(buf.len).write(item) };
            buf.len += 1;
        }
        buf
    }
}

impl<T: Copy> std::ops::Deref for HugePageBlocks<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: the first `len` elements are initialized (written by `collect`), and
        // `ptr` is aligned and non-null (dangling only when `len` is 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for HugePageBlocks<T> {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `collect` with exactly this layout; `T: Copy` needs no
            // drop of its elements.
            unsafe { dealloc(self.ptr.as_ptr().cast(), layout) };
        }
    }
}

impl<T: Copy> std::fmt::Debug for HugePageBlocks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugePageBlocks")
            .field("len", &self.len)
            .field(
                "huge_aligned",
                &self.layout.is_some_and(|l| l.align() == HUGE_PAGE),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_its_items_and_aligns_large_buffers() {
        let small = HugePageBlocks::collect(5, 10u32..);
        assert_eq!(&*small, &[10, 11, 12, 13, 14]);
        let n = (HUGE_PAGE / 8) * 3 + 7;
        let big = HugePageBlocks::collect(n, 0u64..);
        assert_eq!(big.len(), n);
        assert_eq!(big.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(big.iter().enumerate().all(|(i, &v)| v == i as u64));
        let empty = HugePageBlocks::<u8>::collect(0, std::iter::empty());
        assert!(empty.is_empty());
    }

    #[test]
    #[should_panic(expected = "fewer items")]
    fn too_few_items_panic_without_leaking_undefined_memory() {
        let _ = HugePageBlocks::collect(4, [1u8, 2]);
    }
}
