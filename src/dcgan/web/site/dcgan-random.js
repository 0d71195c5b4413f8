// Seeds -> latents and classes as dcgan.sampling draws them with PyTorch's CPU generator: the same
// random draws, the same formulas in float32 (to float rounding: PyTorch's vectorized log/sin/cos
// differ in the last bits), so seed s shows `dcgan generate`'s image within one uint8 level.
//
// torch.Generator().manual_seed(s) is ATen's mt19937 seeded with the low 32 bits of s. A float32
// torch.randn(n) of n >= 16 draws n uniforms (24 bits each) and turns each block of 16 into normals
// by Box-Muller (the last, partial block redrawn as a whole); n < 16 draws double-precision
// Box-Muller pairs, keeping the second value for the next call. torch.randint(k) is one 32-bit draw
// modulo k. dcgan's truncation redraws the components beyond +-T from the same stream.
"use strict";

const N = 624, M = 397;

class MT19937 {
  constructor(seed) {
    this.state = new Uint32Array(N);
    this.state[0] = Number(BigInt(seed) & 0xffffffffn);
    for (let j = 1; j < N; j++) {
      const previous = this.state[j - 1] ^ (this.state[j - 1] >>> 30);
      this.state[j] = (Math.imul(1812433253, previous) + j) >>> 0;
    }
    this.index = N;
    this.cachedNormal = null;  // the second value of a double Box-Muller pair
  }

  twist() {
    const s = this.state;
    for (let k = 0; k < N; k++) {
      const y = (s[k] & 0x80000000) | (s[(k + 1) % N] & 0x7fffffff);
      s[k] = s[(k + M) % N] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.index = 0;
  }

  next() {  // one 32-bit draw
    if (this.index >= N) this.twist();
    let y = this.state[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  uniformFloat() {  // [0, 1) with 24 bits: torch's uniform_real_distribution<float>
    return (this.next() & 0xffffff) / 16777216;
  }

  uniformDouble() {  // [0, 1) with 53 bits from two draws, the first the high word
    const high = this.next(), low = this.next();
    return ((high & 0x1fffff) * 4294967296 + low) / 9007199254740992;
  }
}

function fill16(data, start) {  // ATen's normal_fill_16, in float32
  const f = Math.fround;
  for (let j = 0; j < 8; j++) {
    const u1 = f(1 - data[start + j]);
    const u2 = data[start + j + 8];
    const radius = f(Math.sqrt(f(-2 * f(Math.log(u1)))));
    const theta = f(2.0 * Math.PI * u2);
    data[start + j] = f(radius * f(Math.cos(theta)));
    data[start + j + 8] = f(radius * f(Math.sin(theta)));
  }
}

function scalarNormal(rng) {  // ATen's normal_distribution<double>, cast to float
  if (rng.cachedNormal !== null) {
    const value = rng.cachedNormal;
    rng.cachedNormal = null;
    return Math.fround(value);
  }
  const u1 = rng.uniformDouble(), u2 = rng.uniformDouble();
  const radius = Math.sqrt(-2.0 * Math.log1p(-u2));
  const theta = 2.0 * Math.PI * u1;
  rng.cachedNormal = radius * Math.sin(theta);
  return Math.fround(radius * Math.cos(theta));
}

function randn(rng, n) {  // torch.randn(n, generator=rng): float32
  const data = new Float32Array(n);
  if (n < 16) {
    for (let i = 0; i < n; i++) data[i] = scalarNormal(rng);
    return data;
  }
  for (let i = 0; i < n; i++) data[i] = rng.uniformFloat();
  for (let i = 0; i + 16 <= n; i += 16) fill16(data, i);
  if (n % 16 !== 0) {
    const start = n - 16;
    for (let i = 0; i < 16; i++) data[start + i] = rng.uniformFloat();
    fill16(data, start);
  }
  return data;
}

// dcgan.sampling.latents_from_seeds for one seed: (zDim,) float32, components beyond +-truncation redrawn.
function latentFromSeed(seed, zDim, truncation = null) {
  const rng = new MT19937(seed);
  const z = randn(rng, zDim);
  if (truncation === null) return z;
  const bound = Math.fround(truncation);
  for (;;) {
    const outside = [];
    for (let i = 0; i < zDim; i++) if (Math.abs(z[i]) > bound) outside.push(i);
    if (outside.length === 0) return z;
    const draws = randn(rng, outside.length);
    outside.forEach((index, k) => { z[index] = draws[k]; });
  }
}

const CLASS_SEED_OFFSET = 0x5DEECE66Dn;

// dcgan.sampling.labels_from_seeds for one seed, classes drawn uniformly.
function classFromSeed(seed, numClasses) {
  const rng = new MT19937((BigInt(seed) + CLASS_SEED_OFFSET) % (2n ** 63n));
  return rng.next() % numClasses;
}

// dcgan.sampling.slerp: (zDim,) a, b and t in [0, 1] -> (zDim,) float32.
function slerp(a, b, t) {
  let normA = 0, normB = 0, dot = 0;
  for (let i = 0; i < a.length; i++) { normA += a[i] * a[i]; normB += b[i] * b[i]; }
  normA = Math.sqrt(normA); normB = Math.sqrt(normB);
  for (let i = 0; i < a.length; i++) dot += (a[i] / normA) * (b[i] / normB);
  const omega = Math.acos(Math.min(Math.max(dot, -1 + 1e-7), 1 - 1e-7));
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) {
    out[i] = (Math.sin((1 - t) * omega) * a[i] + Math.sin(t * omega) * b[i]) / Math.sin(omega);
  }
  return out;
}

const dcganRandom = { MT19937, randn, latentFromSeed, classFromSeed, slerp };
if (typeof module !== "undefined") module.exports = dcganRandom;
else globalThis.dcganRandom = dcganRandom;
