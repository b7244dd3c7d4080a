//! The seeded noise generator: the same numbers as OpenVINO GenAI's `CppStdGenerator`, i.e.
//! C++'s `std::mt19937` feeding libstdc++'s `std::normal_distribution<float>` (Marsaglia's polar
//! method). So a seed gives the same initial latents here as in GenAI's Text2ImagePipeline, and
//! the same on every machine: all arithmetic is IEEE f32/f64 and `logf` comes from the pure-Rust
//! `libm` crate rather than the platform's maths library.

use super::scheduler::Noise;

const N: usize = 624;
const M: usize = 397;

/// The 32-bit Mersenne Twister, as `std::mt19937`.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; N],
    index: usize,
}

impl Mt19937 {
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { state, index: N }
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % N] & 0x7fff_ffff);
            let mut next = self.state[(i + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= 0x9908_b0df;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }
}

/// Standard-normal `f32` values from a seed.
#[derive(Clone)]
pub struct NormalRng {
    engine: Mt19937,
    saved: Option<f32>,
}

impl NormalRng {
    pub fn new(seed: u32) -> Self {
        NormalRng { engine: Mt19937::new(seed), saved: None }
    }

    /// A uniform value in [0, 1) with float precision, as libstdc++'s `generate_canonical<float>`:
    /// one 32-bit draw, rounded to float, divided by 2^32.
    fn canonical(&mut self) -> f32 {
        let value = self.engine.next_u32() as f32 / 4_294_967_296.0f32;
        if value >= 1.0 {
            1.0f32 - f32::EPSILON / 2.0 // nextafter(1, 0)
        } else {
            value
        }
    }

    pub fn next_normal(&mut self) -> f32 {
        if let Some(saved) = self.saved.take() {
            return saved;
        }
        loop {
            // `2.0f * u - 1.0` in C++ is computed in double, then stored as float.
            let x = ((2.0f32 * self.canonical()) as f64 - 1.0) as f32;
            let y = ((2.0f32 * self.canonical()) as f64 - 1.0) as f32;
            let r2 = x * x + y * y;
            if r2 > 1.0 || r2 == 0.0 {
                continue;
            }
            let mult = (-2.0f32 * libm::logf(r2) / r2).sqrt();
            self.saved = Some(x * mult);
            return y * mult;
        }
    }
}

impl Noise for NormalRng {
    fn fill(&mut self, out: &mut [f32]) {
        out.iter_mut().for_each(|v| *v = self.next_normal());
    }
}

#[cfg(test)]
#[allow(clippy::excessive_precision)] // GenAI's float32 values, printed with float64 digits
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_cpp_standard() {
        // The C++ standard fixes the 10000th output of a default-seeded (5489) mt19937.
        let mut mt = Mt19937::new(5489);
        let tenth_thousandth = (0..10_000).map(|_| mt.next_u32()).last().unwrap();
        assert_eq!(tenth_thousandth, 4_123_659_995);
        let mut mt = Mt19937::new(42);
        assert_eq!(mt.next_u32(), 1_608_637_542);
    }

    #[test]
    fn draws_what_openvino_genai_draws() {
        // openvino_genai.CppStdGenerator(42).randn_tensor(Shape([1, 4, 2, 2])) (2026.4.1).
        let expected = [
            1.2219213247299194,
            -0.5169641375541687,
            0.8696359395980835,
            0.7213326692581177,
            1.5885562896728516,
            1.61821711063385,
            -0.18712468445301056,
            -1.1883087158203125,
            -0.06342002004384995,
            -0.6877444982528687,
            -0.3858916461467743,
            0.8497391939163208,
            -1.0503947734832764,
            0.2973978817462921,
            0.9577788710594177,
            1.3207602500915527f32,
        ];
        let mut got = [0.0f32; 16];
        NormalRng::new(42).fill(&mut got);
        assert_eq!(got, expected);
        // A full 64x64 latent from the largest seed: the last values and the sum.
        let mut big = vec![0.0f32; 4 * 64 * 64];
        NormalRng::new(u32::MAX).fill(&mut big);
        assert_eq!(&big[big.len() - 3..], &[-0.9591439962387085, 0.8504826426506042, -0.44810259342193604]);
        let sum: f64 = big.iter().map(|&v| v as f64).sum();
        assert!((sum - 203.97740173339844).abs() < 1e-3, "{sum}");
    }

    #[test]
    fn same_seed_same_numbers_and_different_seeds_differ() {
        let draw = |seed| {
            let mut rng = NormalRng::new(seed);
            let mut v = vec![0.0; 64];
            rng.fill(&mut v);
            v
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let v = draw(123);
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.5, "{mean}");
    }
}
