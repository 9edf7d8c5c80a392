// Where the installed package lives, for the addon (build/, prebuilds/) and the unit templates (deploy/).
// The bundled programs run from dist/, the library's modules from dist/src/.

import path from 'node:path';
import { fileURLToPath } from 'node:url';

export function packageRoot(url: string = import.meta.url): string {
  const here = path.dirname(fileURLToPath(url));
  return path.basename(here) === 'dist' ? path.dirname(here) : path.resolve(here, '../..');
}
