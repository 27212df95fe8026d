import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import {dump, load} from 'js-yaml'

import {KsctlError} from '../../../src/errors.js'
import {checkDirFree, readState, writeState, type PlaygroundState} from '../../../src/playground/state.js'
import {withViaTowerContext} from '../../../src/playground/up.js'
import {tempDir} from '../../helpers/temp-dir.js'

function state(pid: number): PlaygroundState {
  return {
    pid,
    edition: '3',
    phase: 'starting',
    startedAt: '2026-12-07T06:00:00.000Z',
    createdDir: true,
    kubeconfig: '/x/kubeconfig',
    cluster: 'member1',
    processes: [],
  }
}

/** A pid that no process has: the largest a Linux kernel hands out is below 2^22. */
const deadPid = 2 ** 22 + 7

describe('playground state (DIR/state.json)', function () {
  it('takes a new directory, or an empty one', () => {
    const parent = tempDir('ksctl-pg-')
    assert.deepEqual(checkDirFree(path.join(parent, 'new')), {exists: false})
    assert.deepEqual(checkDirFree(parent), {exists: true})
  })

  it('refuses a directory with files of its own, naming them', () => {
    const dir = tempDir('ksctl-pg-')
    writeFileSync(path.join(dir, 'notes.txt'), '')
    assert.throws(
      () => checkDirFree(dir),
      (error: unknown) =>
        error instanceof KsctlError && /is not empty \(it holds notes\.txt/.test(error.message),
    )
  })

  it('refuses a second up while the first runs, and says how to see or stop it', () => {
    const dir = tempDir('ksctl-pg-')
    writeState(dir, state(process.pid), true)
    for (const attempt of [() => checkDirFree(dir), () => writeState(dir, state(process.pid), true)]) {
      assert.throws(attempt, (error: unknown) => {
        assert.ok(error instanceof KsctlError)
        assert.match(
          error.message,
          new RegExp(`a playground already runs in .* \\(pid ${String(process.pid)}`),
        )
        assert.match(error.suggestions.join('\n'), /ksctl playground down --dir/)
        return true
      })
    }
  })

  it('sends the files of a playground that is gone to down', () => {
    const dir = tempDir('ksctl-pg-')
    writeState(dir, state(deadPid), true)
    assert.throws(() => checkDirFree(dir), /did not stop cleanly/)
  })

  it('rewrites the state whole', () => {
    const dir = tempDir('ksctl-pg-')
    writeState(dir, state(process.pid), true)
    writeState(dir, {...state(process.pid), phase: 'ready'})
    assert.equal(readState(dir)?.phase, 'ready')
    assert.equal(readState(path.join(dir, 'none')), undefined)
  })
})

describe('the member-via-tower context', function () {
  it('adds the issued kubeconfig at the proxy port, keeping its CA and the admin contexts', () => {
    const admin = dump({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'host',
      clusters: [{name: 'host', cluster: {server: 'https://127.0.0.1:1'}}],
      users: [{name: 'host-admin', user: {token: 'a'}}],
      contexts: [{name: 'host', context: {cluster: 'host', user: 'host-admin'}}],
    })
    const issued = dump({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'member1',
      clusters: [
        {name: 'member1', cluster: {server: 'https://10.0.0.7:6443', 'certificate-authority-data': 'Q0E='}},
      ],
      users: [{name: 'kubesphere', user: {'client-certificate-data': 'Qw==', 'client-key-data': 'Sw=='}}],
      contexts: [{name: 'member1', context: {cluster: 'member1', user: 'kubesphere'}}],
    })
    const merged = load(withViaTowerContext(admin, issued, 16001)) as {
      'current-context': string
      clusters: {name: string; cluster: Record<string, string>}[]
      users: {name: string; user: Record<string, string>}[]
      contexts: {name: string; context: {cluster: string; user: string}}[]
    }
    assert.equal(merged['current-context'], 'host')
    assert.deepEqual(merged.clusters[1], {
      name: 'member-via-tower',
      cluster: {server: 'https://127.0.0.1:16001', 'certificate-authority-data': 'Q0E='},
    })
    assert.deepEqual(merged.users[1]?.user, {'client-certificate-data': 'Qw==', 'client-key-data': 'Sw=='})
    assert.deepEqual(
      merged.contexts.map((context) => context.name),
      ['host', 'member-via-tower'],
    )
  })
})
