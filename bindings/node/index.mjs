// rkl for Node.js as an ES module: the CommonJS module's exports, by name
// and as the default export.
//
//   import { open } from 'rkl';
import rkl from './index.js';

export const {
  open,
  inspectCache,
  Model,
  TokenStream,
  RklError,
  CacheError,
  RuntimeCrashedError,
  RuntimeTimeoutError,
  ResourceExhaustedError,
  Status,
  UNSET,
  version,
  statusStr,
} = rkl;
export default rkl;
