import {existsSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {KsctlError} from './errors.js'

/**
 * The directory ksctl is installed in: the nearest ancestor of this module holding a package.json. Found by
 * walking up because this module runs from `src/` in development and from `dist/src/` when built.
 */
export function packageRoot(): string {
  let directory = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(directory, 'package.json'))) {
    const parent = dirname(directory)
    if (parent === directory) {
      throw new KsctlError(`internal error: no package.json above ${fileURLToPath(import.meta.url)}`, {
        code: 'INTERNAL',
        suggestions: ['reinstall ksctl'],
      })
    }
    directory = parent
  }
  return directory
}

/** A file of `templates/`, which ships in the npm package beside `dist/`. */
export function templatePath(file: string): string {
  return join(packageRoot(), 'templates', file)
}
