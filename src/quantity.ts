/** Kubernetes quantity suffixes and what they multiply by (k8s.io/apimachinery resource.Quantity). */
const multipliers: Record<string, number> = {
  '': 1,
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
}

// Unsigned: a negative request or limit is never meant.
const quantityPattern = /^\+?(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$/

/** The value of a quantity such as `250m` or `1.5Gi`, or undefined when the text is not one. */
export function quantityValue(text: string): number | undefined {
  const match = quantityPattern.exec(text)
  if (match === null) return undefined
  const [, number = '', exponent, suffix = ''] = match
  return Number(number) * (exponent === undefined ? (multipliers[suffix] ?? 1) : 10 ** Number(exponent))
}
