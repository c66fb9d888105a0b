//! `export_sampler!`: turns a [`crate::Sampler`] into the component's exports.

/// Export `$ty` (a [`crate::Sampler`]) as the component's `sampler-plugin` interface. The
/// plugin's version is the calling crate's `CARGO_PKG_VERSION`. Expands to nothing on native
/// targets, so the crate's logic still builds and tests natively.
#[macro_export]
macro_rules! export_sampler {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::exports::worker::plugin::sampler_plugin as __sp;
            use $crate::bindings::worker::plugin::{logits as __logits, types as __types};

            struct __Component;
            struct __Session(::core::cell::RefCell<$ty>);

            impl __sp::Guest for __Component {
                type Session = __Session;
                fn info() -> __types::PluginInfo {
                    $crate::export::info(
                        <$ty as $crate::Sampler>::NAME,
                        env!("CARGO_PKG_VERSION"),
                        <$ty as $crate::Sampler>::DESCRIPTION,
                    )
                }

                fn validate(
                    params: __types::SamplingParams,
                ) -> ::core::result::Result<(), __types::InvalidField> {
                    let params = $crate::export::params_from_wit(params, 0);
                    $crate::export::validated(<$ty as $crate::Sampler>::validate(&params))
                }
            }

            impl __sp::GuestSession for __Session {
                fn open(
                    params: __types::SamplingParams,
                    seed: u64,
                ) -> ::core::result::Result<__sp::Session, __types::Error> {
                    let params = $crate::export::params_from_wit(params, seed);
                    let sampler = <$ty as $crate::Sampler>::new(&params)
                        .map_err($crate::export::error_to_wit)?;
                    Ok(__sp::Session::new(__Session(::core::cell::RefCell::new(
                        sampler,
                    ))))
                }

                fn sample(
                    &self,
                    logits: &__logits::Logits,
                    history: ::std::vec::Vec<u32>,
                ) -> ::core::result::Result<u32, __types::Error> {
                    let view = $crate::export::HostLogits(logits);
                    $crate::Sampler::sample(&mut *self.0.borrow_mut(), &view, &history)
                        .map_err($crate::export::error_to_wit)
                }
            }

    $crate::bindings::export!(__Component with_types_in $crate::bindings);
        };
    };
}
