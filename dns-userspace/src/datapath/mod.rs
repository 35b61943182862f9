//! The kernel side: the XDP program's loading, pinning and attaching, the hot map's
//! encoding and publishing, and the answer table both answer paths read.

pub mod ebpf;
pub mod hot;
pub mod pools;
