import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {ExitCode} from '../../../src/errors.js'
import {ksctl} from '../../helpers/ksctl-process.js'
import {tempDir} from '../../helpers/temp-dir.js'

// oclif's standard plugins, as package.json's oclif.plugins ships them: help, version, autocomplete, not-found.
describe('the standard oclif commands', function () {
  this.timeout(60_000)

  it('ksctl help lists the topics and commands, and ksctl help TOPIC the topic', async () => {
    const root = await ksctl(['help'])
    assert.equal(root.exitCode, 0, root.stderr)
    assert.match(root.stdout, /^TOPICS\n(.*\n)* {2}tower +\S/m)
    const member = await ksctl(['help', 'member'])
    assert.equal(member.exitCode, 0, member.stderr)
    assert.match(member.stdout, /member join +Join a member cluster/)
    assert.match(member.stdout, /member leave +Remove a member cluster/)
  })

  it('ksctl version prints the version, as --version does', async () => {
    const version = await ksctl(['version'])
    assert.equal(version.exitCode, 0, version.stderr)
    assert.match(version.stdout, /^ksctl\/\d+\.\d+\.\d+ \S+ node-v\d+/)
    assert.equal(version.stdout, (await ksctl(['--version'])).stdout)
  })

  it('ksctl autocomplete explains the set-up and builds its completions from the commands', async () => {
    // oclif keeps the completion cache under <BIN>_CACHE_DIR, by default ~/.cache/ksctl.
    const cache = tempDir('ksctl-autocomplete-')
    const result = await ksctl(['autocomplete', 'bash'], {KSCTL_CACHE_DIR: cache})
    assert.equal(result.exitCode, 0, result.stderr)
    assert.match(result.stdout, /ksctl autocomplete script bash/)
    const completions = readFileSync(
      path.join(cache, 'autocomplete', 'functions', 'bash', 'ksctl.bash'),
      'utf8',
    )
    assert.match(completions, /^member:join .*--member-context .*--label/m)
  })

  it('an unknown command names itself and the help, with the shell’s exit code for it', async () => {
    const result = await ksctl(['stauts'])
    assert.equal(result.exitCode, ExitCode.CommandNotFound)
    assert.equal(result.stdout, '')
    assert.match(result.stderr, /stauts is not a ksctl command/)
    assert.match(result.stderr, /Run ksctl help for a list of available commands/)
  })
})
