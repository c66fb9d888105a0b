//! A constraint plugin with three bugs the conformance kit must catch: it compiles any kind
//! (even one the contract does not name), its mask allows every token at every step (the end
//! token before anything is written, so it never fails closed), and it takes any token.

#[cfg(target_arch = "wasm32")]
mod component {
    use std::cell::Cell;

    wit_bindgen::generate!({
        path: "../../../wit",
        world: "constraint",
    });

    use exports::worker::plugin::constraint_plugin::{self as wit, Guest, GuestConstraint};
    use worker::plugin::types::{Error, PluginInfo};
    use worker::plugin::vocab;

    struct Plugin;

    impl Guest for Plugin {
        type Constraint = Constraint;

        fn info() -> PluginInfo {
            PluginInfo {
                name: "broken".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                description: "allows everything, always".into(),
            }
        }

        fn init() -> Result<(), Error> {
            Ok(())
        }
    }

    struct Constraint(Cell<u32>);

    impl GuestConstraint for Constraint {
        fn compile(_kind: String, _spec: String) -> Result<wit::Constraint, Error> {
            // Bug 1: every kind compiles.
            Ok(wit::Constraint::new(Constraint(Cell::new(0))))
        }

        fn allowed(&self, _remaining: u32) -> Vec<u32> {
            // Bug 2: every token, the end token included, at every step.
            let size = vocab::info().size as usize;
            vec![u32::MAX; size.div_ceil(32)]
        }

        fn advance(&self, _token: u32) -> Result<(), Error> {
            // Bug 3: any token is taken.
            self.0.set(self.0.get() + 1);
            Ok(())
        }

        fn is_complete(&self) -> bool {
            true
        }
    }

    export!(Plugin);
}
