// Checkpoint file formats: safetensors, PyTorch's torch.save zip, and a dispatching reader.
export {
  readSafetensors, readSafetensorsHeader, writeSafetensors, parseSafetensorsHeader, MAX_HEADER_BYTES,
  type SafetensorsEntry, type SafetensorsHeader, type ReadSafetensorsOptions, type WriteSafetensorsOptions,
} from './safetensors.js';
export { readTorchCheckpoint, readTorchCheckpointFull, type ReadTorchCheckpointOptions } from './torch_checkpoint.js';
export { readStateDict, detectCheckpointFormat, type CheckpointFormat, type ReadStateDictOptions } from './state_dict.js';
export { readShardIndex } from './sharded.js';
