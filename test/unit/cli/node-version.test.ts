import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {execa} from 'execa'

import {parseNodeRange, unsupportedNodeExitCode, unsupportedNodeMessage} from '../../../bin/node-version.js'
import {ExitCode} from '../../../src/errors.js'

const root = path.resolve(import.meta.dirname, '..', '..', '..')
const engines = (
  JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {engines: {node: string}}
).engines.node

/** Runs a bin script with `process.versions.node` reporting `version`, as an older Node.js would. */
async function runAs(version: string, script: string, args: string[], nodeOptions: string[] = []) {
  const pretend = `data:text/javascript,Object.defineProperty(process.versions,'node',{value:'${version}'})`
  return execa(
    process.execPath,
    [...nodeOptions, '--import', pretend, path.join(root, 'bin', script), ...args],
    {
      reject: false,
      stdin: 'ignore',
      env: {NO_COLOR: '1'},
    },
  )
}

describe('the Node.js version check in bin/', function () {
  this.timeout(30_000)

  it("reads package.json's engines.node", () => {
    assert.ok(parseNodeRange(engines).length > 0)
    assert.throws(() => parseNodeRange('22.x'), /cannot read "22.x"/)
  })

  it('accepts the versions engines.node allows and no others', () => {
    const range = '^22.22.2 || ^24.15.0 || >=26.0.0'
    for (const version of ['22.22.2', '22.23.3', '24.15.0', '24.20.1', '26.0.0', '27.1.0']) {
      assert.equal(unsupportedNodeMessage(version, range, 'node'), undefined, version)
    }
    for (const version of ['18.20.4', '20.20.2', '22.19.0', '22.22.1', '23.11.0', '24.14.9', '25.2.0']) {
      assert.ok(unsupportedNodeMessage(version, range, 'node'), version)
    }
  })

  it('says which Node.js runs, which versions ksctl needs, and what to do', () => {
    const message = unsupportedNodeMessage('20.20.2', '^22.22.2 || ^24.15.0 || >=26.0.0', '/usr/bin/node')
    assert.equal(
      message?.split('\n')[0],
      'error: ksctl needs Node.js 22.22.2 or a later 22.x, 24.15.0 or a later 24.x, or 26.0.0 and later; this is Node.js 20.20.2 (/usr/bin/node)',
    )
    assert.match(message ?? '', /→ install a current Node\.js LTS release \(https:\/\/nodejs\.org/)
  })

  it('exits as a usage or environment error does', () => {
    assert.equal(unsupportedNodeExitCode, ExitCode.Usage)
  })

  for (const [script, nodeOptions] of [
    ['run.js', []],
    ['dev.js', ['--import', 'tsx']],
  ] as const) {
    it(`stops bin/${script} before oclif loads, with the message alone`, async () => {
      const result = await runAs('20.20.2', script, ['--help'], [...nodeOptions])
      assert.equal(result.exitCode, ExitCode.Usage)
      assert.equal(result.stdout, '')
      assert.match(result.stderr, /^error: ksctl needs Node\.js .*; this is Node\.js 20\.20\.2 \(/)
      assert.equal(result.stderr.trim().split('\n').length, 2, result.stderr)
    })
  }

  it('lets a supported Node.js through', async () => {
    const result = await runAs(process.versions.node, 'run.js', ['--version'])
    assert.equal(result.exitCode, 0, result.stderr)
    assert.match(result.stdout, /^ksctl\/\d+\.\d+\.\d+ /)
  })
})
