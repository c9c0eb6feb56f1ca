/** Client index (1..32000) -> its address in 10.8.128.0/17, the load namespace's `local` range. */
export const clientAddress = (i: number): string => `10.8.${128 + (i >> 8)}.${i & 255}`
