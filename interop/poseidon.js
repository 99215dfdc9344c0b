// Prints Poseidon([1, 2]), then H^k(seed) for k = 1..steps with H(x) = Poseidon([x]),
// one decimal per line, computed by circomlibjs (the reference JS implementation).
// Usage: node poseidon.js SEED STEPS
const { buildPoseidon } = require("circomlibjs");

async function main() {
  const [seed, steps] = process.argv.slice(2);
  if (seed === undefined || steps === undefined) {
    console.error("usage: node poseidon.js SEED STEPS");
    process.exit(2);
  }
  const poseidon = await buildPoseidon();
  const F = poseidon.F;
  console.log(F.toString(poseidon([1n, 2n])));
  let x = BigInt(seed);
  for (let k = 0; k < Number(steps); k++) {
    x = F.toObject(poseidon([x]));
    console.log(x.toString());
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
