// Writes oclif.manifest.json from the compiled commands in dist/, with commands sorted by id.
//
// Not `oclif manifest`: it deletes oclif.manifest.json before it loads a single command, so a load that
// failed (an old Node.js, a command that throws on import) left the tracked file deleted. This builds the
// same manifest with the same oclif API, in memory, and replaces the file by a rename only once the new
// one is written whole.
import {renameSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {exitUnlessSupportedNode} from '../bin/node-version.js'

exitUnlessSupportedNode()
const {Plugin} = await import('@oclif/core')

const root = path.resolve(import.meta.dirname, '..')
const target = path.join(root, 'oclif.manifest.json')
const staged = `${target}.${process.pid}.tmp`
try {
  // The options `oclif manifest` uses: load every command from dist/, never from an existing manifest.
  const plugin = new Plugin({
    root,
    type: 'core',
    ignoreManifest: true,
    errorOnManifestCreate: true,
    respectNoCacheDefault: true,
  })
  await plugin.load()
  const manifest = plugin.manifest
  // Commands come in file-system order, which differs between checkouts.
  manifest.commands = Object.fromEntries(
    Object.entries(manifest.commands).sort(([a], [b]) => (a < b ? -1 : 1)),
  )
  writeFileSync(staged, JSON.stringify(manifest, null, 2))
  renameSync(staged, target)
  process.stdout.write(`wrote ${path.relative(process.cwd(), target)}\n`)
} catch (error) {
  rmSync(staged, {force: true})
  const reason = error instanceof Error ? (error.stack ?? error.message) : String(error)
  process.stderr.write(`build: oclif.manifest.json is left as it was: ${reason}\n`)
  process.exitCode = 1
}
