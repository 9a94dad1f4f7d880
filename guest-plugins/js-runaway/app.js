// js-runaway: a cojobs plugin whose run never returns (fuel must stop it).
export function describe() {
  return {
    name: 'js-runaway',
    version: '0.2.0',
    description: 'Loops forever; the sandbox\'s fuel limit must stop it.',
    modes: [],
    params: [],
  };
}

export function run(job) {
  for (;;) {}
}
