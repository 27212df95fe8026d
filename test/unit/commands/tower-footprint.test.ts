import assert from 'node:assert/strict'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {execa} from 'execa'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')

// Reports every package a module graph resolves, on stderr, one `PACKAGE name` line each. Hooks run on a
// thread of their own, whose process.stderr writes the main thread may not flush before it exits (under load
// the recorder saw only the first packages): each line is written to file descriptor 2 synchronously.
const recordPackages = `data:text/javascript,${encodeURIComponent(`
import {writeSync} from 'node:fs'
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context)
  const match = /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(resolved.url)
  if (match !== null) writeSync(2, 'PACKAGE ' + match[1] + '\\n')
  return resolved
}`)}`

async function packagesLoadedBy(module: string): Promise<Set<string>> {
  const {stderr} = await execa(
    process.execPath,
    [
      '--import',
      'tsx',
      '--input-type=module',
      '--eval',
      `import {register} from 'node:module'
register(${JSON.stringify(recordPackages)})
await import(${JSON.stringify(join(root, module))})`,
    ],
    {cwd: root},
  )
  return new Set([...stderr.matchAll(/^PACKAGE (\S+)$/gm)].map((match) => match[1] ?? ''))
}

describe('the tower processes’ footprint', function () {
  this.timeout(60_000)

  for (const command of ['commands/tower/agent.ts', 'commands/tower/proxy.ts']) {
    it(`${command} starts without the Kubernetes client library (about 85 MiB), which only Kubernetes mode loads`, async () => {
      const packages = await packagesLoadedBy(command)
      assert.ok(packages.has('ws'), `the recorder saw no package at all: ${[...packages].join(', ')}`)
      assert.ok(!packages.has('@kubernetes/client-node'), 'the Kubernetes client library was loaded')
    })
  }

  it('a command that talks to clusters does load it (the recorder sees it)', async () => {
    const packages = await packagesLoadedBy('commands/info.ts')
    assert.ok(packages.has('@kubernetes/client-node'))
  })
})
