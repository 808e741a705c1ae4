// The data pipeline: spec string -> datasets -> seeded transforms -> batches from worker threads.
export { parseDataSpec, DATA_SPEC_HELP, type DataSpec } from './spec.js';
export { openData, type OpenDataOptions, type OpenedData } from './open.js';
export {
  ImageDataset,
  stratifiedSplit,
  type DatasetHandle,
  type ImageSource,
  type Plan,
  type SourceImage,
  type Split,
} from './dataset.js';
export { scanFolder, IMAGE_EXTENSIONS, type FolderScan } from './folder.js';
export { parseIdx, readIdx, findIdxFiles, loadIdxPair, type IdxArray, type IdxFiles } from './idx.js';
export { loadBundledMnist } from './mnist.js';
export { SyntheticSource, syntheticImage } from './synthetic.js';
export {
  NORMALIZATIONS,
  resolveNormalization,
  resolveTransform,
  randomResizedCropBox,
  evalPlan,
  sampleParams,
  writeImage,
  renormalize,
  type Normalization,
  type NormalizationName,
  type TransformOptions,
  type TransformSpec,
  type SampleParams,
} from './transforms.js';
export { DataLoader, type Batch, type LoaderOptions, type LoaderStats, type Position } from './loader.js';
export { DataError, SampleReadError } from './errors.js';
export { Rng, permutation, Stream } from '../util/rng.js';
