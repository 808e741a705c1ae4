/** Absolute path of the CUDA build of the medic-native engine (CPU + CUDA backends). */
export declare const path: string;
export declare const variant: 'cuda';
/** This package's version; medic-native loads it only when it equals its own. */
export declare const version: string;
