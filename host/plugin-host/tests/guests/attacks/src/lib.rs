//! What a hostile plugin can try from inside any world, one function per attack; the hostile
//! tokenizer and request handler run them on request (a magic prompt or body). Each either never
//! returns normally (the host must stop it) or returns a probe's finding for the host test to
//! check (the host grants nothing behind WASI's environment, files and sockets).

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

/// The attack a magic word names.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Attack {
    /// An endless loop (time bound or fuel).
    Spin,
    /// Allocate 1 MiB blocks until the memory limit stops it.
    MemoryBomb,
    /// A Rust panic (a trap, its message on stderr).
    Panic,
    /// Recursion until the Wasm stack runs out.
    Recurse,
    /// Recursion with large frames until Rust's shadow stack in linear memory runs out.
    RecurseBig,
    /// Sleep for an hour through `wasi:clocks` (a wait inside the host).
    Sleep,
    /// Ask `wasi:random` for a terabyte.
    RandomBomb,
    /// Read the clocks and random numbers the way std does (allowed).
    ClockAndRandom,
    /// Look at the environment and arguments (granted: none).
    Env,
    /// Read a host file (granted: no filesystem).
    File,
}

impl Attack {
    pub fn from_word(word: &str) -> Option<Attack> {
        Some(match word {
            "spin" => Attack::Spin,
            "bomb" => Attack::MemoryBomb,
            "panic" => Attack::Panic,
            "recurse" => Attack::Recurse,
            "recurse-big" => Attack::RecurseBig,
            "sleep" => Attack::Sleep,
            "random-bomb" => Attack::RandomBomb,
            "clock" => Attack::ClockAndRandom,
            "env" => Attack::Env,
            "file" => Attack::File,
            _ => return None,
        })
    }
}

/// Run `attack`. Returns only for the probes: `Ok(finding)` when the sandbox held (the finding
/// names what was seen), `Err(finding)` when it did not.
pub fn run(attack: Attack) -> Result<String, String> {
    match attack {
        Attack::Spin => {
            let mut n = 0u64;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        Attack::MemoryBomb => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(black_box(vec![1u8; 1 << 20]));
            }
        }
        Attack::Panic => panic!("hostile plugin panics on purpose"),
        Attack::Recurse => Ok(recurse(black_box(0)).to_string()),
        Attack::RecurseBig => Ok(recurse_big(0).to_string()),
        Attack::Sleep => {
            std::thread::sleep(Duration::from_secs(3600));
            Err("slept for an hour".into())
        }
        Attack::RandomBomb => {
            let bytes = wasip2::random::random::get_random_bytes(1 << 40);
            Err(format!("got {} random bytes", bytes.len()))
        }
        Attack::ClockAndRandom => {
            let start = Instant::now();
            let wall = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_err(|e| e.to_string())?;
            let random = wasip2::random::random::get_random_bytes(16);
            let later = Instant::now();
            if wall.as_secs() > 1_600_000_000 && random.len() == 16 && later >= start {
                Ok("clocks and random work".into())
            } else {
                Err(format!("wall {wall:?}, {} random bytes", random.len()))
            }
        }
        Attack::Env => {
            let vars = std::env::vars().count();
            let args = std::env::args().count();
            let cwd = std::env::current_dir().ok();
            // wasi-libc answers `getcwd` with "/" on its own when no directory is preopened:
            // not a capability (the file probe checks that nothing can be opened).
            if vars == 0 && args == 0 && cwd.as_deref().is_none_or(|d| d == std::path::Path::new("/")) {
                Ok(format!("no environment (cwd {cwd:?})"))
            } else {
                Err(format!("{vars} variables, {args} arguments, cwd {cwd:?}"))
            }
        }
        Attack::File => match std::fs::read("/etc/passwd") {
            Ok(bytes) => Err(format!("read {} bytes of /etc/passwd", bytes.len())),
            Err(e) => Ok(format!("no filesystem: {e}")),
        },
    }
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    (recurse(depth + 1) ^ depth).rotate_left(3)
}

fn recurse_big(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let mut frame = [depth; 64];
    frame[(depth % 64) as usize] = black_box(recurse_big(depth + 1));
    black_box(frame).iter().sum()
}

/// Bytes that are not UTF-8, as a `String` (what a buggy or hostile guest can hand the
/// canonical ABI).
pub fn invalid_utf8() -> String {
    // SAFETY: deliberately not UTF-8; the string only crosses the component boundary, where
    // the host's lifting must refuse it. Nothing in the guest reads it as text.
    unsafe { String::from_utf8_unchecked(vec![b'a', 0xff, 0xfe, b'b']) }
}
