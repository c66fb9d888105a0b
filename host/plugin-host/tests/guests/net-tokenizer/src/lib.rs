//! A tokenizer that tries to phone home; its socket imports must keep it from loading.

wit_bindgen::generate!({ path: "../../../../../wit", world: "tokenizer" });

use exports::worker::plugin::tokenizer_plugin::Guest;
use worker::plugin::types::{Error, PluginInfo};

struct Plugin;

fn net() -> Error {
    let message = match std::net::TcpStream::connect("203.0.113.1:80") {
        Ok(_) => "connected".into(),
        Err(e) => e.to_string(),
    };
    Error {
        code: "NET".into(),
        message,
    }
}

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "net-tok".into(),
            version: "0.1.0".into(),
            description: "opens a socket".into(),
        }
    }

    fn init() -> Result<(), Error> {
        Err(net())
    }

    fn encode(_text: String, _parse_special: bool, _add_bos: bool) -> Result<Vec<u32>, Error> {
        Err(net())
    }

    fn token_piece(_id: u32) -> Result<Vec<u8>, Error> {
        Err(net())
    }

    fn decode(_ids: Vec<u32>, _skip_special: bool) -> Result<Vec<u8>, Error> {
        Err(net())
    }
}

export!(Plugin);
