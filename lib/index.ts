// Public entry of the medic-native package.
export * from './engine/index.js';
export { loadBinding } from './native.js';
