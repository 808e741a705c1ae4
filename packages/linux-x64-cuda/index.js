// The binary of this package, for medic-native's loader (lib/engine): it requires `path` itself, so
// that importing this package never loads the addon.
'use strict';
const { join } = require('node:path');

module.exports = {
  /** Absolute path of the CUDA build of the engine (CPU + CUDA backends). */
  path: join(__dirname, 'medic_cuda.node'),
  variant: 'cuda',
  version: require('./package.json').version,
};
