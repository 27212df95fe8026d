import assert from 'node:assert/strict'
import {accessSync, constants, readdirSync, readFileSync, symlinkSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {execa} from 'execa'

import {tempDir} from '../helpers/temp-dir.js'

const buildScript = path.resolve(import.meta.dirname, '..', 'testbed', 'build.sh')
const goMod = readFileSync(path.resolve(import.meta.dirname, '..', 'testbed', 'build', 'go.mod'), 'utf8')
const requiredGo = /^go (\S+)$/m.exec(goMod)?.[1] ?? ''

function onPath(tool: string): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, tool)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not in this directory
    }
  }
  throw new Error(`${tool} is not on PATH`)
}

/** A directory for PATH holding a `go` that reports `version`, as `go env GOVERSION` does. */
function fakeGo(version: string): string {
  const dir = tempDir('ksctl-fake-go-')
  writeFileSync(path.join(dir, 'go'), `#!/bin/sh\necho go${version}\n`, {mode: 0o755})
  return dir
}

/** A PATH with the tools build.sh needs up to its Go check, and no go. */
function pathWithoutGo(): string {
  const dir = tempDir('ksctl-no-go-')
  for (const tool of ['bash', 'dirname', 'awk', 'cat', 'sha256sum', 'cut']) {
    symlinkSync(onPath(tool), path.join(dir, tool))
  }
  return dir
}

async function build(pathEnv: string, args: string[] = []) {
  const cache = tempDir('ksctl-testbed-cache-')
  const result = await execa(buildScript, args, {
    reject: false,
    stdin: 'ignore',
    env: {PATH: pathEnv, KSCTL_TESTBED_CACHE: cache},
    extendEnv: false,
  })
  return {...result, cacheEntries: readdirSync(cache)}
}

describe('test/testbed/build.sh', function () {
  this.timeout(30_000)

  it("reads the Go it needs from the test bed's go.mod", () => {
    assert.match(requiredGo, /^1\.\d+(\.\d+)?$/)
  })

  it('stops before building, and says which Go to install, when there is no go', async () => {
    const result = await build(pathWithoutGo())
    assert.equal(result.exitCode, 1)
    assert.equal(result.stdout, '')
    assert.match(
      result.stderr,
      new RegExp(`built with Go ${requiredGo.replaceAll('.', '\\.')} or newer, and there is no go on PATH`),
    )
    assert.deepEqual(result.cacheEntries, [])
  })

  it('stops before building when go is older than go.mod requires', async () => {
    const result = await build(`${fakeGo('1.24.7')}${path.delimiter}${process.env.PATH ?? ''}`)
    assert.equal(result.exitCode, 1)
    assert.match(result.stderr, /go is Go 1\.24\.7: install a newer Go/)
    assert.deepEqual(result.cacheEntries, [])
  })

  it('accepts the Go that go.mod names, and a later one', async () => {
    for (const version of [requiredGo, '1.99.0']) {
      const result = await build(`${fakeGo(version)}${path.delimiter}${process.env.PATH ?? ''}`, [
        '--check-go',
      ])
      assert.equal(result.exitCode, 0, `${version}: ${result.stderr}`)
    }
  })
})
