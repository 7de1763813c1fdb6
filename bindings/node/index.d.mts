// The ES module's declarations: the same API as index.d.ts, by name and as
// the default export.
export * from './index.js';
import * as rkl from './index.js';
export default rkl;
