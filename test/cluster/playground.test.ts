import assert from 'node:assert/strict'
import {existsSync, readFileSync} from 'node:fs'
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import {execa} from 'execa'
import {load} from 'js-yaml'

import type {PlaygroundState} from '../../src/playground/state.js'
import type {PlaygroundStatus} from '../../src/playground/status.js'
import {ksctl} from '../helpers/ksctl-process.js'
import {tempDir} from '../helpers/temp-dir.js'

const runJs = path.resolve(import.meta.dirname, '..', '..', 'bin', 'run.js')

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

function kubectl(kubeconfig: string, args: string[]) {
  return execa(
    '/usr/bin/kubectl',
    ['--kubeconfig', kubeconfig, '--context', 'member-via-tower', '--request-timeout', '20s', ...args],
    {reject: false, stdin: 'ignore'},
  )
}

/** The pids of `pids` still there after a few seconds: a killed process is reaped by init an instant later. */
async function stillAlive(pids: number[]): Promise<number[]> {
  for (let tries = 0; tries < 50 && pids.some(alive); tries++) await delay(100)
  return pids.filter(alive)
}

/** Every pid the playground recorded, its own included. */
function recordedPids(dir: string): number[] {
  const state = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as PlaygroundState
  return [state.pid, ...state.processes.map((child) => child.pid)]
}

describe('ksctl playground (its own kube-apiservers, besides the test bed)', function () {
  this.timeout(240_000)

  it('up --detach joins the member; kubectl reaches it through the tunnel; a second up is refused; status; down leaves nothing', async () => {
    const dir = path.join(tempDir('ksctl-playground-'), 'pg')
    const up = await execa(process.execPath, [runJs, 'playground', 'up', '--detach', '--dir', dir], {
      reject: false,
      stdin: 'ignore',
      env: {NO_COLOR: '1'},
      timeout: 180_000,
    })
    assert.equal(up.exitCode, 0, up.stderr)
    assert.match(up.stdout, /member joined/)
    assert.match(up.stdout, /--context member-via-tower get namespaces/)
    for (const phase of ['host init', 'proxy set-address', 'tower proxy', 'member join', 'tower agent']) {
      assert.match(up.stderr, new RegExp(`\\$ ksctl ${phase}`), `phase ${phase} not shown`)
    }
    assert.match(up.stderr, /stand-in: KubeSphere's controllers cannot run here/)
    const pids = recordedPids(dir)
    assert.equal(pids.length, 7, 'up, 2 etcd, 2 kube-apiserver, tower proxy, tower agent')
    try {
      const again = await ksctl(['playground', 'up', '--dir', dir])
      assert.notEqual(again.exitCode, 0)
      assert.match(again.stderr, /a playground already runs in/)

      const status = await ksctl(['playground', 'status', '--dir', dir, '--json'])
      assert.equal(status.exitCode, 0, status.stderr)
      const report = JSON.parse(status.stdout) as PlaygroundStatus
      assert.equal(report.running, true)
      assert.deepEqual(
        report.processes.map((child) => [child.name, child.running]),
        [
          ['host etcd', true],
          ['host kube-apiserver', true],
          ['member etcd', true],
          ['member kube-apiserver', true],
          ['tower proxy', true],
          ['tower agent', true],
        ],
      )
      assert.ok(report.cluster.conditions.some((c) => c.type === 'Ready' && c.status === 'True'))

      const kubeconfig = path.join(dir, 'kubeconfig')
      const config = load(readFileSync(kubeconfig, 'utf8')) as {
        contexts: {name: string}[]
        clusters: {name: string; cluster: Record<string, unknown>}[]
      }
      assert.deepEqual(
        config.contexts.map((context) => context.name),
        ['host', 'member', 'member-via-tower'],
      )
      const viaTower = config.clusters.find((cluster) => cluster.name === 'member-via-tower')?.cluster
      assert.ok(viaTower?.['certificate-authority-data'], 'TLS is verified against the proxy CA')
      assert.equal(viaTower['insecure-skip-tls-verify'], undefined)

      const namespaces = await kubectl(kubeconfig, ['get', 'namespaces', '-o', 'name'])
      assert.equal(namespaces.exitCode, 0, namespaces.stderr)
      assert.match(namespaces.stdout, /namespace\/kube-system/)

      const watch = execa(
        '/usr/bin/kubectl',
        [
          ...['--kubeconfig', kubeconfig, '--context', 'member-via-tower'],
          ...['get', 'configmaps', '--namespace', 'default', '--watch', '-o', 'name'],
        ],
        {reject: false, stdin: 'ignore'},
      )
      try {
        const manifest = path.join(path.dirname(dir), 'hello.yaml')
        await execa('/bin/sh', [
          '-c',
          `printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: hello, namespace: default}\\ndata: {greeting: hello}\\n' > ${manifest}`,
        ])
        const seen = new Promise<void>((resolve) => {
          watch.stdout.on('data', (chunk: Buffer) => {
            if (chunk.toString().includes('configmap/hello')) resolve()
          })
        })
        const applied = await kubectl(kubeconfig, ['apply', '-f', manifest])
        assert.equal(applied.exitCode, 0, applied.stderr)
        await seen
        const memberSide = await execa('/usr/bin/kubectl', [
          ...['--kubeconfig', kubeconfig, '--context', 'member'],
          ...['get', 'configmap', 'hello', '--namespace', 'default', '-o', 'jsonpath={.data.greeting}'],
        ])
        assert.equal(memberSide.stdout, 'hello', 'the configmap is on the member itself')
        const deleted = await kubectl(kubeconfig, ['delete', '-f', manifest])
        assert.equal(deleted.exitCode, 0, deleted.stderr)
      } finally {
        watch.kill('SIGTERM')
        await watch
      }
    } finally {
      const down = await ksctl(['playground', 'down', '--dir', dir])
      assert.equal(down.exitCode, 0, down.stderr)
      assert.match(down.stdout, /stopped the playground/)
    }
    assert.equal(existsSync(dir), false, `${dir} is still there`)
    assert.deepEqual(await stillAlive(pids), [], 'processes left')
  })

  it('in the foreground, Ctrl-C stops every process and removes every file', async () => {
    const parent = tempDir('ksctl-playground-')
    const dir = path.join(parent, 'pg')
    // Its own process group, as a terminal's foreground job: the interrupt goes to the group, as Ctrl-C does.
    const up = execa(process.execPath, [runJs, 'playground', 'up', '--dir', dir], {
      reject: false,
      stdin: 'ignore',
      env: {NO_COLOR: '1'},
      detached: true,
    })
    let stdout = ''
    const joined = new Promise<void>((resolve) => {
      up.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString()
        if (stdout.includes('Ctrl-C stops it')) resolve()
      })
    })
    await Promise.race([joined, up.then(({stderr}) => assert.fail(`up ended: ${stderr}`))])
    const pids = recordedPids(dir)
    process.kill(-(up.pid ?? 0), 'SIGINT')
    const result = await up
    assert.equal(result.signal, 'SIGINT', result.stderr)
    assert.equal(existsSync(dir), false, `${dir} is still there`)
    assert.deepEqual(await stillAlive(pids), [], 'processes left')
  })
  it('killed outright (SIGKILL), up takes its processes with it, and down removes the files it left', async () => {
    const dir = path.join(tempDir('ksctl-playground-'), 'pg')
    const up = await execa(process.execPath, [runJs, 'playground', 'up', '--detach', '--dir', dir], {
      reject: false,
      stdin: 'ignore',
      env: {NO_COLOR: '1'},
      timeout: 180_000,
    })
    assert.equal(up.exitCode, 0, up.stderr)
    const [supervisor, ...children] = recordedPids(dir)
    process.kill(supervisor ?? 0, 'SIGKILL')
    assert.deepEqual(await stillAlive(children), [], 'children outlived their parent')
    assert.equal(existsSync(dir), true, 'nothing could remove the files of a SIGKILLed up')
    const status = await ksctl(['playground', 'status', '--dir', dir])
    assert.match(status.stdout, /NOT RUNNING/)
    const down = await ksctl(['playground', 'down', '--dir', dir])
    assert.equal(down.exitCode, 0, down.stderr)
    assert.match(down.stdout, /removed what a stopped playground left/)
    assert.equal(existsSync(dir), false, `${dir} is still there`)
  })
})
