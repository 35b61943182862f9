//! The one accessor for packet memory: every access is bounds-checked against `data_end`
//! right before it, in the form the verifier understands (the packet start plus a bounded
//! offset compared with the end). All `unsafe` packet access is here.
//!
//! Views (`&[u8; N]` into the frame) and resizing exclude each other through the borrow
//! checker: resizing takes `&mut self`, and a resize moves the frame's start and end.

use aya_ebpf::{
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};

/// Every offset the program accesses lies in the first 1 KiB of the frame (the furthest is
/// the end of an OPT record after a 255-octet name and a 272-octet answer: 632). Masking
/// offsets with this keeps them provably below 1 KiB for the verifier whatever it lost
/// track of. A no-op on the value.
pub const OFFSET_MASK: usize = 0x3ff;

/// `off`, through a volatile stack slot: LLVM can no longer see how it was computed. The
/// `*_ending` accessors use it: LLVM would otherwise fold the negative constant of
/// `end - size` into the load instruction's offset, which the verifier rejects ("R3 offset
/// is outside of the packet"), and drop the mask as redundant. The verifier follows the
/// value through the stack with its bounds.
#[inline(always)]
pub fn opaque(off: usize) -> usize {
    let slot = off;
    // SAFETY: reads a live local.
    unsafe { core::ptr::read_volatile(&slot) }
}

/// The frame of the packet being processed.
pub struct Packet<'a> {
    ctx: &'a XdpContext,
}

/// Integers the packet is read and written in (one load or store each). Not `u8`: LLVM
/// turns a one-octet bounds check into `end > p`, from which the verifier derives no range.
pub trait Word: Copy {}
impl Word for u16 {}
impl Word for u32 {}
impl Word for u64 {}

impl<'a> Packet<'a> {
    #[inline(always)]
    pub fn new(ctx: &'a XdpContext) -> Self {
        Self { ctx }
    }

    /// Length of the frame now.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.ctx.data_end() - self.ctx.data()
    }

    /// Address of `[off, off + size)` in the frame, or `None` past its end.
    #[inline(always)]
    fn at(&self, off: usize, size: usize) -> Option<usize> {
        let off = off & OFFSET_MASK;
        let start = self.ctx.data();
        if start + off + size > self.end() {
            return None;
        }
        Some(start + off)
    }

    /// `data_end`, loaded for each bounds check: LLVM would otherwise drop a check it
    /// proved redundant on another path, which the verifier, following each path's
    /// registers, cannot see.
    #[inline(always)]
    fn end(&self) -> usize {
        // SAFETY: `ctx.ctx` points at the live `xdp_md` for the program's run.
        unsafe { core::ptr::read_volatile(&(*self.ctx.ctx).data_end) as usize }
    }

    /// The octets at `off` as a native integer. Unaligned loads are fine: the program is
    /// built with `+allows-misaligned-mem-access` (one load, not one per octet) and the
    /// kernel permits them on architectures with efficient unaligned access.
    #[inline(always)]
    pub fn load<T: Word>(&self, off: usize) -> Option<T> {
        let p = self.at(off, core::mem::size_of::<T>())?;
        // SAFETY: inside the frame (checked by `at`); T is an integer.
        Some(unsafe { core::ptr::read_unaligned(p as *const T) })
    }

    /// Address of the `size` octets that end at `end` (see [`opaque`]).
    #[inline(always)]
    fn ending(&self, end: usize, size: usize) -> Option<usize> {
        let off = (opaque(end) - size) & OFFSET_MASK;
        let start = self.ctx.data();
        if start + off + size > self.end() {
            return None;
        }
        Some(start + off)
    }

    /// The integer whose last octet is at `end - 1` (`end` at least its size).
    #[inline(always)]
    pub fn load_ending<T: Word>(&self, end: usize) -> Option<T> {
        let p = self.ending(end, core::mem::size_of::<T>())?;
        // SAFETY: inside the frame (checked by `ending`); T is an integer.
        Some(unsafe { core::ptr::read_unaligned(p as *const T) })
    }

    /// Writes an integer whose last octet goes to `end - 1`.
    #[inline(always)]
    pub fn store_ending<T: Word>(&mut self, end: usize, v: T) -> Option<()> {
        let p = self.ending(end, core::mem::size_of::<T>())?;
        // SAFETY: as in `load_ending`; XDP frames are writable.
        unsafe { core::ptr::write_unaligned(p as *mut T, v) };
        Some(())
    }

    /// The `N` octets that end at `end`, read in place.
    #[inline(always)]
    pub fn view_ending<const N: usize>(&self, end: usize) -> Option<&[u8; N]> {
        let p = self.ending(end, N)?;
        // SAFETY: as in `view`.
        Some(unsafe { &*(p as *const [u8; N]) })
    }

    /// The big-endian 16-bit field at `off`, loaded again even if it was loaded before: a
    /// value neither LLVM nor the verifier relates to earlier checks (see `parse::frame`).
    #[inline(always)]
    pub fn reload_be16(&self, off: usize) -> Option<u16> {
        let p = self.at(off, 2)?;
        // SAFETY: inside the frame (checked by `at`).
        Some(u16::from_be(unsafe {
            core::ptr::read_volatile(p as *const u16)
        }))
    }

    /// Writes a native integer at `off`; `None` (nothing written) past the end.
    #[inline(always)]
    pub fn store<T: Word>(&mut self, off: usize, v: T) -> Option<()> {
        let p = self.at(off, core::mem::size_of::<T>())?;
        // SAFETY: as in `load`; XDP frames are writable.
        unsafe { core::ptr::write_unaligned(p as *mut T, v) };
        Some(())
    }

    /// The `N` octets at `off`, read in place.
    #[inline(always)]
    pub fn view<const N: usize>(&self, off: usize) -> Option<&[u8; N]> {
        let p = self.at(off, N)?;
        // SAFETY: inside the frame; byte arrays have alignment 1; no resize while borrowed.
        Some(unsafe { &*(p as *const [u8; N]) })
    }

    /// The `N` octets at `off`, written in place.
    #[inline(always)]
    pub fn view_mut<const N: usize>(&mut self, off: usize) -> Option<&mut [u8; N]> {
        let p = self.at(off, N)?;
        // SAFETY: as in `view`; `&mut self` makes it the only view.
        Some(unsafe { &mut *(p as *mut [u8; N]) })
    }

    /// Grows (or, negative, shrinks) the frame at its tail (growing needs kernel 5.8).
    /// False when the driver left no room; the frame is unchanged then.
    #[inline(always)]
    pub fn adjust_tail(&mut self, delta: i32) -> bool {
        // SAFETY: the helper checks its arguments against the frame.
        unsafe { bpf_xdp_adjust_tail(self.ctx.ctx, delta) == 0 }
    }

    /// Moves the frame's start by `delta` (negative: grows into the headroom). False when
    /// there is not enough headroom; the frame is unchanged then.
    #[inline(always)]
    pub fn adjust_head(&mut self, delta: i32) -> bool {
        // SAFETY: as above.
        unsafe { bpf_xdp_adjust_head(self.ctx.ctx, delta) == 0 }
    }
}
