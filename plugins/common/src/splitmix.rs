//! SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014;
//! the constants of Vigna's reference C): a 64-bit counter advanced by the golden ratio, each
//! value passed through a fixed mixing function. Small, fast and well mixed; not cryptographic.

/// The SplitMix64 generator; the field is its whole state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64(pub u64);

/// The counter's increment: 2^64 divided by the golden ratio, odd.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    /// Advance the state and return the next 64 well-mixed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The first output of a generator whose state is `x`: a fast 64-bit hash of `x`.
    pub fn hash(x: u64) -> u64 {
        SplitMix64(x).next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_implementation() {
        // The first outputs of Vigna's splitmix64.c seeded with 0 and with 1234567.
        let mut g = SplitMix64(0);
        assert_eq!(g.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(g.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut g = SplitMix64(1_234_567);
        assert_eq!(g.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(g.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(SplitMix64::hash(1_234_567), 6_457_827_717_110_365_317);
    }
}
