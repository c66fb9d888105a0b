//! A hostile constraint plugin: the `kind` given to `compile` picks the misbehaviour.
//! `ok` allows every token; `trap-allowed` panics in `allowed`; `loop-allowed` never returns;
//! `short` answers a one-word mask; `trap-compile` panics in `compile`; anything else is
//! refused with the code `NOPE`.

use std::cell::Cell;

wit_bindgen::generate!({ path: "../../../../../wit", world: "constraint" });

use exports::worker::plugin::constraint_plugin::{Constraint, Guest, GuestConstraint};
use worker::plugin::host;
use worker::plugin::types::{Error, PluginInfo};

struct Plugin;

impl Guest for Plugin {
    type Constraint = Hostile;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "hostile".into(),
            version: "0.1.0".into(),
            description: "misbehaves on request".into(),
        }
    }

    fn init() -> Result<(), Error> {
        Ok(())
    }
}

struct Hostile {
    mode: String,
    steps: Cell<u32>,
}

impl GuestConstraint for Hostile {
    fn compile(kind: String, _spec: String) -> Result<Constraint, Error> {
        match kind.as_str() {
            "ok" | "trap-allowed" | "loop-allowed" | "short" => Ok(Constraint::new(Hostile {
                mode: kind,
                steps: Cell::new(0),
            })),
            "trap-compile" => panic!("compile blew up"),
            _ => Err(Error {
                code: "NOPE".into(),
                message: format!("kind {kind} refused"),
            }),
        }
    }

    fn allowed(&self, _remaining: u32) -> Vec<u32> {
        self.steps.set(self.steps.get() + 1);
        let words = host::model().vocab_size.div_ceil(32) as usize;
        match self.mode.as_str() {
            "trap-allowed" => panic!("allowed blew up"),
            "loop-allowed" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "short" => vec![u32::MAX],
            _ => vec![u32::MAX; words],
        }
    }

    fn advance(&self, _token: u32) -> Result<(), Error> {
        Ok(())
    }

    fn is_complete(&self) -> bool {
        true
    }
}

export!(Plugin);
