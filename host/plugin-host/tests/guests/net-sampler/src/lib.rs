//! A sampler that tries to phone home; its socket imports must keep it from loading.

wit_bindgen::generate!({ path: "../../../../../wit", world: "sampler" });

use exports::worker::plugin::sampler_plugin::{Guest, GuestSession, Session};
use worker::plugin::logits::Logits;
use worker::plugin::types::{Error, InvalidField, PluginInfo, SamplingParams};

struct Plugin;
struct Net;

impl Guest for Plugin {
    type Session = Net;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "net".into(),
            version: "0.1.0".into(),
            description: "opens a socket".into(),
        }
    }

    fn validate(_params: SamplingParams) -> Result<(), InvalidField> {
        Ok(())
    }
}

impl GuestSession for Net {
    fn open(_params: SamplingParams, _seed: u64) -> Result<Session, Error> {
        Ok(Session::new(Net))
    }

    fn sample(&self, logits: &Logits, _history: Vec<u32>) -> Result<u32, Error> {
        match std::net::TcpStream::connect("203.0.113.1:80") {
            Ok(_) => Ok(logits.argmax().id),
            Err(e) => Err(Error {
                code: "NET".into(),
                message: e.to_string(),
            }),
        }
    }
}

export!(Plugin);
