//! The marker one transaction plants and the next must never see: 16-byte blocks, a
//! 64-bit nonce and a value derived from it. Counting never materialises a block in linear
//! memory (the nonce and the derived value stay in wasm locals), so a scan cannot find a
//! copy of its own making.

/// Bytes in one marker block.
pub const BLOCK: usize = 16;

/// The second half of a block whose first half is `nonce`.
pub fn partner(nonce: u64) -> u64 {
    nonce.rotate_left(17) ^ 0x5a5a_a5a5_0f0f_f0f0
}

/// Marker blocks at 16-byte aligned addresses anywhere in this instance's memory, after
/// growing it to at least `at_least_mib` so pages a previous instance used beyond this
/// one's initial size are read too.
pub fn count(nonce: u64, at_least_mib: usize) -> u64 {
    const PAGE: usize = 65536;
    let wanted = at_least_mib * (1 << 20) / PAGE;
    let pages = core::arch::wasm32::memory_size::<0>();
    if pages < wanted {
        core::arch::wasm32::memory_grow::<0>(wanted - pages);
    }
    let end = core::arch::wasm32::memory_size::<0>() * PAGE;
    let second = partner(nonce);
    let mut found = 0;
    // Address 0 is skipped: a marker there would need a null pointer read.
    let mut addr = BLOCK;
    while addr + BLOCK <= end {
        // SAFETY: every address below `end` is inside this instance's linear memory.
        let first = unsafe { core::ptr::read_volatile(addr as *const u64) };
        if first == nonce {
            let next = unsafe { core::ptr::read_volatile((addr + 8) as *const u64) };
            if next == second {
                found += 1;
            }
        }
        addr += BLOCK;
    }
    found
}

/// The nonce of an input word: 16 hex digits.
pub fn parse_nonce(word: Option<&str>) -> Result<u64, String> {
    let word = word.ok_or("missing nonce")?;
    u64::from_str_radix(word, 16).map_err(|e| format!("bad nonce {word:?}: {e}"))
}
