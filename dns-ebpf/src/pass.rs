//! A program that passes every packet, in an object of its own (no maps). Native XDP on a
//! veth only delivers `XDP_TX` frames when the peer veth runs an XDP program too; operators
//! with containers behind veth pairs, and the tests, attach this one on the peer.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn hotpool_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
