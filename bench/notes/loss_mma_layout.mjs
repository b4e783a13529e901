// Paper check of the fragment mapping in native/cuda/contrastive_loss.cu (row_pass_tc), run on
// the CPU: `node bench/notes/loss_mma_layout.mjs`. Not a test of the product: it restates the
// kernel's index formulas (SmemFrags in mma.cuh, col(), the ga packing) and checks them against
// the PTX ISA's definitions of ldmatrix and mma.m16n8k16, which it also restates. It was used
// before any GPU had run the kernel; once the CUDA loss tests pass on a GPU it has no job left.
//
// Emulated: a warp's ldmatrix.x4 (.trans) from a bf16 stage with rows kLd apart, the mma from
// the PTX fragment tables (A: a_i at row g + 8 (i % 2), col 2t + 8 (i / 2); B: b_i at
// k 2t + 8 i, n g; C: c_e at row g + 8 (e / 2), col 2t + e % 2; low half = lower index).
// Checked: the 16 × 64 logit tile each warp gets, read through col(), equals own · otherᵀ,
// and the update G · other through the packed C->A fragments and ldmatrix.trans equals the
// plain product. Small integers keep every product exact. A deliberately wrong mapping must
// fail, so the check can fail.
const kLd = 72, kBK = 64;

function ldmatrix(smem, addr, trans) {
  // addr[l]: element index of row l % 8 of matrix l / 8. Returns r[l][i] = [lo, hi].
  const r = [];
  for (let l = 0; l < 32; l++) {
    r.push([]);
    for (let i = 0; i < 4; i++) {
      const row = trans ? 2 * (l % 4) : Math.floor(l / 4);
      const col = trans ? Math.floor(l / 4) : 2 * (l % 4);
      const at = (rr, cc) => smem[addr[8 * i + rr] + cc];
      r[l].push(trans ? [at(row, col), at(row + 1, col)] : [at(row, col), at(row, col + 1)]);
    }
  }
  return r;
}

function mma(c, a, b0, b1) {
  // c[l][e], a[l][i] = [lo, hi], b0[l], b1[l] = [lo, hi]; D = A B + C over the warp.
  const A = Array.from({ length: 16 }, () => new Array(16).fill(0));
  const B = Array.from({ length: 16 }, () => new Array(8).fill(0));
  for (let l = 0; l < 32; l++) {
    const g = l >> 2, t = l & 3;
    for (let i = 0; i < 4; i++)
      for (let h = 0; h < 2; h++) A[g + 8 * (i % 2)][2 * t + 8 * Math.floor(i / 2) + h] = a[l][i][h];
    for (let h = 0; h < 2; h++) {
      B[2 * t + h][g] = b0[l][h];
      B[2 * t + 8 + h][g] = b1[l][h];
    }
  }
  for (let l = 0; l < 32; l++) {
    const g = l >> 2, t = l & 3;
    for (let e = 0; e < 4; e++) {
      const m = g + 8 * (e >> 1), n = 2 * t + (e & 1);
      for (let k = 0; k < 16; k++) c[l][e] += A[m][k] * B[k][n];
    }
  }
}

// SmemFrags<kLd>: per-lane addresses.
const fragA = (r0, c0) => Array.from({ length: 32 }, (_, l) => (r0 + (l & 15)) * kLd + c0 + (l >> 4) * 8);
const fragB = (n0, k0) => Array.from({ length: 32 }, (_, l) => (n0 + (l & 7) + (l >> 4) * 8) * kLd + k0 + ((l >> 3) & 1) * 8);
const fragBt = (k0, n0) => Array.from({ length: 32 }, (_, l) => (k0 + (l & 7) + ((l >> 3) & 1) * 8) * kLd + n0 + (l >> 4) * 8);

function check(wrong) {
  const rnd = () => Math.floor(Math.random() * 7) - 3;
  const own = Array.from({ length: 64 }, () => Array.from({ length: kBK }, rnd));
  const other = Array.from({ length: 64 }, () => Array.from({ length: kBK }, rnd));
  const stage = (m) => {
    const s = new Array(64 * kLd).fill(NaN);  // pads must never be read
    for (let r = 0; r < 64; r++) for (let c = 0; c < kBK; c++) s[r * kLd + c] = m[r][c];
    return s;
  };
  const sOwn = stage(own), sOther = stage(other);
  let bad = 0;
  for (let warp = 0; warp < 4; warp++) {
    const S = Array.from({ length: 8 }, () => Array.from({ length: 32 }, () => [0, 0, 0, 0]));
    for (let ks = 0; ks < kBK; ks += 16) {
      const a = ldmatrix(sOwn, fragA(16 * warp, ks), false);
      for (let n = 0; n < 4; n++) {
        const b = ldmatrix(sOther, fragB(16 * n, ks), false);
        const pick = (i) => b.map((x) => x[wrong ? [0, 2, 1, 3][i] : i]);
        mma(S[2 * n], a, pick(0), pick(1));
        mma(S[2 * n + 1], a, pick(2), pick(3));
      }
    }
    // Logits through col(): lane (g, t), row g + 8 h, value c -> S[c / 2][l][2 h + c % 2].
    for (let l = 0; l < 32; l++) {
      const g = l >> 2, t = l & 3;
      for (let h = 0; h < 2; h++)
        for (let c = 0; c < 16; c++) {
          const i = 16 * warp + g + 8 * h, j = 8 * Math.floor(c / 2) + 2 * t + (c % 2);
          let ref = 0;
          for (let k = 0; k < kBK; k++) ref += own[i][k] * other[j][k];
          if (S[Math.floor(c / 2)][l][2 * h + (c % 2)] !== ref) bad++;
        }
    }
    // Update: G = the logit tile itself (any values do), ga packed as in the kernel.
    const ga = Array.from({ length: 4 }, (_, kt) =>
      Array.from({ length: 32 }, (_, l) =>
        Array.from({ length: 4 }, (_, r) => {
          const cv = S[2 * kt + (r >> 1)][l], e = 2 * (r % 2);
          return [cv[e], cv[e + 1]];
        })));
    const acc = Array.from({ length: 8 }, () => Array.from({ length: 32 }, () => [0, 0, 0, 0]));
    for (let kt = 0; kt < 4; kt++)
      for (let n = 0; n < 4; n++) {
        const b = ldmatrix(sOther, fragBt(16 * kt, 16 * n), true);
        mma(acc[2 * n], ga[kt], b.map((x) => x[0]), b.map((x) => x[1]));
        mma(acc[2 * n + 1], ga[kt], b.map((x) => x[2]), b.map((x) => x[3]));
      }
    for (let l = 0; l < 32; l++) {
      const g = l >> 2, t = l & 3;
      for (let h = 0; h < 2; h++)
        for (let n = 0; n < 8; n++)
          for (let e = 0; e < 2; e++) {
            const i = 16 * warp + g + 8 * h, dcol = 8 * n + 2 * t + e;
            let ref = 0;
            for (let j = 0; j < 64; j++) {
              let gij = 0;
              for (let k = 0; k < kBK; k++) gij += own[i][k] * other[j][k];
              ref += gij * other[j][dcol];
            }
            if (acc[n][l][2 * h + e] !== ref) bad++;
          }
    }
  }
  return bad;
}

const ok = check(false), broken = check(true);
console.log(`correct mapping: ${ok} mismatches; deliberately wrong B mapping: ${broken} mismatches`);
if (ok !== 0 || broken === 0) process.exit(1);
