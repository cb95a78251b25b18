//! glibc malloc's process-wide settings for benchcam: how many heaps ("arenas") it keeps.
//!
//! glibc gives threads their own arena, up to 8 per core (16 on a 2-core VM, 32 on a
//! Pi 4, 64 on an 8-core PC). benchcam starts and ends threads as cameras reopen and
//! viewers come and go (each live encoder is a thread), and frame-sized buffers freed
//! once raise glibc's mmap threshold, so later ones come from those arenas. An arena
//! keeps the pages it touched after its thread has gone: `cargo bench --bench live` with
//! glibc allowed 64 arenas (an 8-core machine) measured 40.4 MiB at 720p30 recording + 4
//! viewers after its earlier phases' viewers had come and gone, 29.6 MiB with two arenas
//! (README "Figures", issue 11). The hot paths allocate nothing per
//! frame (tests/alloc.rs), so the threads sharing two arenas seldom wait on their locks.

/// Arenas glibc may create: the main one and one for all other threads.
const ARENA_MAX: libc::c_int = 2;

/// Caps glibc's arenas at `ARENA_MAX`. Call before the service starts its threads: glibc
/// fixes its own limit once it has made 8 arenas, and a cap set later is ignored.
/// `MALLOC_ARENA_MAX` in the environment, when set, is left to decide. Other C
/// libraries: nothing to do.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt takes two integers and touches only malloc's own settings.
        if unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) } != 1 {
            log::debug!("malloc: mallopt(M_ARENA_MAX) refused; glibc's default applies");
        }
    }
}
