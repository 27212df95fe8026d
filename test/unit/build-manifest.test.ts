import assert from 'node:assert/strict'
import {copyFileSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {execa} from 'execa'

import {tempDir} from '../helpers/temp-dir.js'

const root = path.resolve(import.meta.dirname, '..', '..')

function command(summary: string): string {
  return `import {Command} from '@oclif/core'\nexport default class extends Command {\n  static summary = '${summary}'\n  async run() {}\n}\n`
}

/** A package laid out as ksctl is (dist/commands, bin/, scripts/), with its own commands and manifest. */
function fixturePackage(commands: Record<string, string>): string {
  const dir = tempDir('ksctl-build-manifest-')
  const ownPackage = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {engines: unknown}
  writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({
      name: 'fixture',
      version: '1.0.0',
      type: 'module',
      engines: ownPackage.engines,
      files: ['dist'],
      oclif: {bin: 'fixture', commands: './dist/commands'},
    }),
  )
  symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'), 'dir')
  for (const file of ['bin/node-version.js', 'scripts/build-manifest.js']) {
    mkdirSync(path.join(dir, path.dirname(file)), {recursive: true})
    copyFileSync(path.join(root, file), path.join(dir, file))
  }
  mkdirSync(path.join(dir, 'dist', 'commands'), {recursive: true})
  for (const [name, source] of Object.entries(commands))
    writeFileSync(path.join(dir, 'dist', 'commands', name), source)
  writeFileSync(path.join(dir, 'oclif.manifest.json'), '{"previous": true}\n')
  return dir
}

async function buildManifest(dir: string) {
  return execa(process.execPath, ['scripts/build-manifest.js'], {cwd: dir, reject: false, stdin: 'ignore'})
}

describe('npm run build: the oclif manifest', function () {
  this.timeout(30_000)

  it('lists the commands sorted by id, whatever order the file system gives', async () => {
    const dir = fixturePackage({'zeta.js': command('last'), 'alpha.js': command('first')})
    const result = await buildManifest(dir)
    assert.equal(result.exitCode, 0, result.stderr)
    const manifest = JSON.parse(readFileSync(path.join(dir, 'oclif.manifest.json'), 'utf8')) as {
      commands: Record<string, {summary: string}>
    }
    assert.deepEqual(Object.keys(manifest.commands), ['alpha', 'zeta'])
    assert.equal(manifest.commands.alpha?.summary, 'first')
  })

  it('leaves the existing manifest as it was when a command fails to load', async () => {
    const dir = fixturePackage({
      'alpha.js': command('first'),
      'broken.js': `${command('broken')}throw new Error('broken on import')\n`,
    })
    const result = await buildManifest(dir)
    assert.equal(result.exitCode, 1)
    assert.match(result.stderr, /oclif\.manifest\.json is left as it was: Error: broken on import/)
    assert.equal(readFileSync(path.join(dir, 'oclif.manifest.json'), 'utf8'), '{"previous": true}\n')
    assert.deepEqual(
      readdirSync(dir).filter((name) => name.startsWith('oclif.manifest')),
      ['oclif.manifest.json'],
    )
  })
})
