// From a spec string (--data) to train and val datasets, with every layout problem reported before
// training starts. See spec.ts for the strings and docs/DATA.md for the layouts.
import { join } from 'node:path';

import { ImageDataset, stratifiedSplit, type ImageSource } from './dataset.js';
import { DataError } from './errors.js';
import { FolderSource, hasSubfolder, scanFolder } from './folder.js';
import { findIdxFiles, loadIdxPair } from './idx.js';
import { loadBundledMnist } from './mnist.js';
import { parseDataSpec, type DataSpec } from './spec.js';
import { SyntheticSource } from './synthetic.js';

export interface OpenDataOptions {
  /** Fraction of each class held out for val when the data has no explicit split (default 0.1; 0 = no val). */
  valFraction?: number;
  /** Seed of that split; independent of the training seed so the val set stays put (default 0). */
  splitSeed?: number;
  /** Side of the generated synthetic images (default 64). */
  syntheticSize?: number;
  /** Seed of the synthetic generator (default 0). */
  syntheticSeed?: number;
}

export interface OpenedData {
  spec: DataSpec;
  train: ImageDataset;
  /** null when the data has no val split and valFraction is 0. */
  val: ImageDataset | null;
  classNames: readonly string[];
  /** Things worth one line in the log (ignored files, how the split was made). */
  notes: string[];
}

function digitNames(n: number): string[] {
  return Array.from({ length: n }, (_, i) => String(i));
}

function splitSource(
  source: ImageSource,
  classNames: string[],
  description: string,
  o: Required<OpenDataOptions>,
  notes: string[],
): { train: ImageDataset; val: ImageDataset | null } {
  const all = new ImageDataset(source, null, classNames, 'all', description);
  if (o.valFraction === 0) {
    notes.push(`${description}: no val split (valFraction 0), ${all.length} train images`);
    return { train: new ImageDataset(source, null, classNames, 'train', description), val: null };
  }
  const labels = all.labels();
  const { train, val } = stratifiedSplit(labels, classNames.length, o.valFraction, o.splitSeed);
  notes.push(
    `${description}: seeded split ${train.length} train / ${val.length} val (valFraction ${o.valFraction}, splitSeed ${o.splitSeed})`,
  );
  return {
    train: all.subset(train, 'train', `${description} [train]`),
    val: val.length > 0 ? all.subset(val, 'val', `${description} [val]`) : null,
  };
}

export async function openData(specOrString: string | DataSpec, options: OpenDataOptions = {}): Promise<OpenedData> {
  const spec = typeof specOrString === 'string' ? parseDataSpec(specOrString) : specOrString;
  const o: Required<OpenDataOptions> = {
    valFraction: options.valFraction ?? 0.1,
    splitSeed: options.splitSeed ?? 0,
    syntheticSize: options.syntheticSize ?? 64,
    syntheticSeed: options.syntheticSeed ?? 0,
  };
  if (!(o.valFraction >= 0 && o.valFraction < 1))
    throw new DataError(`valFraction must be in [0, 1), found ${o.valFraction}`);
  if (!Number.isSafeInteger(o.splitSeed) || o.splitSeed < 0)
    throw new DataError(`splitSeed must be a non-negative integer, found ${o.splitSeed}`);
  const notes: string[] = [];
  switch (spec.kind) {
    case 'folder': {
      const root = spec.root;
      if (hasSubfolder(root, 'train')) {
        const trainScan = scanFolder(join(root, 'train'));
        if (trainScan.ignored) notes.push(`${trainScan.root}: ignored ${trainScan.ignored} non-image file(s)`);
        const trainSrc = FolderSource.create(trainScan);
        if (hasSubfolder(root, 'val')) {
          const valScan = scanFolder(join(root, 'val'), trainScan.classNames);
          if (valScan.ignored) notes.push(`${valScan.root}: ignored ${valScan.ignored} non-image file(s)`);
          const valSrc = FolderSource.create(valScan);
          return {
            spec,
            train: new ImageDataset(trainSrc, null, trainScan.classNames, 'train', `folder ${trainScan.root}`),
            val: new ImageDataset(valSrc, null, trainScan.classNames, 'val', `folder ${valScan.root}`),
            classNames: trainScan.classNames,
            notes,
          };
        }
        const s = splitSource(trainSrc, trainScan.classNames, `folder ${trainScan.root}`, o, notes);
        return { spec, ...s, classNames: trainScan.classNames, notes };
      }
      const scan = scanFolder(root);
      if (scan.ignored) notes.push(`${scan.root}: ignored ${scan.ignored} non-image file(s)`);
      const s = splitSource(FolderSource.create(scan), scan.classNames, `folder ${scan.root}`, o, notes);
      return { spec, ...s, classNames: scan.classNames, notes };
    }
    case 'idx': {
      const files = findIdxFiles(spec.dir);
      const train = loadIdxPair(files.trainImages, files.trainLabels);
      if (files.valImages && files.valLabels) {
        const val = loadIdxPair(files.valImages, files.valLabels);
        const classNames = digitNames(Math.max(train.maxLabel, val.maxLabel) + 1);
        return {
          spec,
          train: new ImageDataset(train.source, null, classNames, 'train', `idx ${files.trainImages}`),
          val: new ImageDataset(val.source, null, classNames, 'val', `idx ${files.valImages}`),
          classNames,
          notes,
        };
      }
      const classNames = digitNames(train.maxLabel + 1);
      const s = splitSource(train.source, classNames, `idx ${files.trainImages}`, o, notes);
      return { spec, ...s, classNames, notes };
    }
    case 'mnist': {
      const classNames = digitNames(10);
      const s = splitSource(loadBundledMnist(), classNames, 'mnist (bundled, 10k digits)', o, notes);
      return { spec, ...s, classNames, notes };
    }
    case 'synthetic': {
      if (!Number.isSafeInteger(o.syntheticSize) || o.syntheticSize < 4)
        throw new DataError(`syntheticSize must be an integer >= 4, found ${o.syntheticSize}`);
      const classNames = Array.from({ length: spec.classes }, (_, c) => `class${c}`);
      const src = SyntheticSource.create(spec.count, spec.classes, o.syntheticSize, o.syntheticSeed);
      const s = splitSource(
        src,
        classNames,
        `synthetic: ${spec.count} images of ${o.syntheticSize}x${o.syntheticSize} px, ${spec.classes} classes`,
        o,
        notes,
      );
      return { spec, ...s, classNames, notes };
    }
  }
}
