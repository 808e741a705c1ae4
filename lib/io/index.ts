// Files: safetensors (our own reader and writer), run checkpoints, the student's timm export, and
// the CLIP teacher's checkpoints (Hugging Face and OpenAI layouts).
export { SafetensorsFile, writeSafetensors } from './safetensors.js';
export type { SafeDType, WriteTensor } from './safetensors.js';
export {
  checkParamTable,
  loadCheckpoint,
  paramTable,
  readCheckpointState,
  resolveCheckpoint,
  saveCheckpoint,
} from './checkpoint.js';
export type { Checkpoint, ParamEntry, TrainState } from './checkpoint.js';
export { exportStudentTimm, loadStudentExport, readStudentExport, studentToTimm, TIMM_VIT_FORMAT } from './export.js';
export type { ExportHead, StudentExport, VitExportArch } from './export.js';
export {
  describeClipCheckpoint,
  describeTeacherInput,
  foldInputNormalization,
  inspectClipCheckpoint,
  loadClipTeacher,
  readClipTeacher,
  renormalizeTeacherInput,
  resizePosEmbed,
  resolveTeacherInput,
  teacherConfigFromArch,
} from './teacher.js';
export type { ClipCheckpointArch, ClipCheckpointInfo, ClipLayout, TeacherInput } from './teacher.js';
