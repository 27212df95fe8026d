import assert from 'node:assert/strict'
import {readFile, writeFile} from 'node:fs/promises'
import type {IncomingMessage} from 'node:http'
import https from 'node:https'
import path from 'node:path'

import {execa} from 'execa'
import WebSocket, {WebSocketServer} from 'ws'

import {loadProxyCa, issueKubeconfig} from '../../src/tower/proxy/issue-kubeconfig.js'
import {startKsctl, until, type RunningKsctl} from '../helpers/ksctl-running.js'
import {grantUser, leastPrivilegeAgent, untilAllowed} from '../helpers/member-rbac.js'
import {tempDir} from '../helpers/temp-dir.js'
import {freePort} from '../testbed/http.js'
import {testBed} from './hooks.js'

const runJs = path.resolve(import.meta.dirname, '..', '..', 'bin', 'run.js')
const token = 'cluster-test-tunnel-token-0123456789'
const kubectl = '/usr/bin/kubectl'

describe('tower tunnel against the real member kube-apiserver', function () {
  this.timeout(180_000)
  let dir: string
  let proxy: RunningKsctl
  let agent: RunningKsctl
  let echo: WebSocketServer
  const others: RunningKsctl[] = []
  let frontEnd: number
  let agentPort: string
  let clusterPort: number
  let kubespherePort: number
  let metricsPort: number
  let leastPrivilege: Awaited<ReturnType<typeof leastPrivilegeAgent>>
  let removeGrant: () => Promise<void>

  before(async () => {
    dir = tempDir('ksctl-tunnel-')
    const kubeconfig = testBed().kubeconfigPath
    leastPrivilege = await leastPrivilegeAgent(kubeconfig, testBed().clusters.member.url, testBed().caCertPem)
    // What the kubeconfigs issued below (user ksctl-admin, the default of ksctl tower issue-kubeconfig) do on the member.
    removeGrant = await grantUser(kubeconfig, 'member', {
      name: 'ksctl-test-tunnel-client',
      user: 'ksctl-admin',
      rules: [
        {apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'list']},
        {
          apiGroups: [''],
          resources: ['configmaps'],
          verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'],
        },
      ],
    })
    await untilAllowed(kubeconfig, 'member', {user: 'ksctl-admin'}, 'delete', 'configmaps')
    ;[clusterPort, kubespherePort, metricsPort] = [await freePort(), await freePort(), await freePort()]
    await writeFile(
      path.join(dir, 'clusters.yaml'),
      `- {name: member, token: ${token}, kubernetesPort: ${clusterPort}, kubespherePort: ${kubespherePort}}\n`,
    )
    await writeFile(path.join(dir, 'token'), token)
    echo = new WebSocketServer({host: '127.0.0.1', port: 0})
    echo.on('connection', (socket) => socket.on('message', (data, binary) => socket.send(data, {binary})))
    await new Promise((resolve) => echo.once('listening', resolve))
    const echoPort = (echo.address() as {port: number}).port
    proxy = startKsctl([
      'tower',
      'proxy',
      '--clusters',
      path.join(dir, 'clusters.yaml'),
      '--state-dir',
      path.join(dir, 'state'),
      '--listen',
      '127.0.0.1:0',
      '--front-end',
      '127.0.0.1:0',
      '--metrics-address',
      `127.0.0.1:${metricsPort}`,
    ])
    await until(() => proxy.output().includes('tower proxy started'), 'the proxy')
    const started = JSON.parse(
      proxy
        .output()
        .split('\n')
        .find((line) => line.includes('tower proxy started')) ?? '{}',
    ) as {agents: string; frontEnd: number}
    frontEnd = started.frontEnd
    agentPort = /:(\d+)$/.exec(started.agents)?.[1] ?? ''
    agent = startKsctl([
      'tower',
      'agent',
      '--name',
      'member',
      '--token-file',
      path.join(dir, 'token'),
      '--proxy-server',
      `https://127.0.0.1:${agentPort}`,
      '--proxy-ca',
      path.join(dir, 'state', 'ca.crt'),
      // The agent's service account may only impersonate; requests run as the client (user ksctl-admin, below).
      ...leastPrivilege.flags,
      '--kubesphere-service',
      `127.0.0.1:${echoPort}`,
      '--allow',
      `echo=127.0.0.1:${echoPort}`,
      '--keepalive',
      '10s',
    ])
    await until(() => proxy.output().includes('agent connected'), 'the agent')
  })

  after(async () => {
    for (const running of [agent, ...others, proxy]) running.process.kill('SIGTERM')
    const exits = await Promise.all([agent, proxy].map((running) => running.process))
    echo.close()
    for (const exit of exits) assert.equal(exit.exitCode, 0)
    await removeGrant()
    await leastPrivilege.remove()
    const logs = [agent, proxy, ...others].map((running) => running.output()).join('\n')
    assert.ok(!logs.includes(token), 'a log line holds the tunnel token')
    assert.ok(!/BEGIN [A-Z ]*PRIVATE KEY-----\n/.test(logs), 'a log line holds a private key')
  })

  async function kubeconfigFor(server: string, name: string, expired = false): Promise<string> {
    const ca = await loadProxyCa({stateDir: path.join(dir, 'state')}, false)
    const file = path.join(dir, name)
    const text = await issueKubeconfig({
      ca,
      cluster: 'member',
      server,
      ...(expired && {
        notBefore: new Date(Date.now() - 3 * 86_400_000),
        notAfter: new Date(Date.now() - 86_400_000),
      }),
    })
    await writeFile(file, text, {mode: 0o600})
    return file
  }

  async function metrics(): Promise<string> {
    return (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
  }

  it('issues a kubeconfig with the CLI', async () => {
    const result = await execa(process.execPath, [
      runJs,
      'tower',
      'issue-kubeconfig',
      '--state-dir',
      path.join(dir, 'state'),
      '--cluster',
      'member',
      '--server',
      `https://127.0.0.1:${frontEnd}/clusters/member`,
      '-f',
      path.join(dir, 'cli.kubeconfig'),
    ])
    assert.equal(result.exitCode, 0)
    const {stdout} = await execa(kubectl, [
      '--kubeconfig',
      path.join(dir, 'cli.kubeconfig'),
      'get',
      'ns',
      '-o',
      'name',
    ])
    assert.match(stdout, /namespace\/default/)
  })

  for (const frontEndKind of ['path-routed', 'per-cluster'] as const) {
    it(`runs kubectl get, apply, delete and a watch through the ${frontEndKind} front end`, async () => {
      const server =
        frontEndKind === 'path-routed'
          ? `https://127.0.0.1:${frontEnd}/clusters/member`
          : `https://127.0.0.1:${clusterPort}`
      const kubeconfig = await kubeconfigFor(server, `${frontEndKind}.kubeconfig`)
      const k = (...args: string[]) => execa(kubectl, ['--kubeconfig', kubeconfig, ...args])
      assert.match((await k('get', 'ns', '-o', 'name')).stdout, /namespace\/kube-system/)
      const name = `tunnel-${frontEndKind}`
      const manifest = path.join(dir, `${name}.yaml`)
      await writeFile(
        manifest,
        `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${name}, namespace: default}\ndata: {a: b}\n`,
      )
      await k('apply', '-f', manifest)
      assert.equal((await k('get', 'configmap', name, '-o', 'jsonpath={.data.a}')).stdout, 'b')
      const watch = execa(
        kubectl,
        ['--kubeconfig', kubeconfig, 'get', 'configmaps', '-n', 'default', '--watch', '-o', 'name'],
        {reject: false},
      )
      let seen = ''
      watch.stdout?.on('data', (chunk: Buffer) => (seen += chunk.toString()))
      await until(() => seen.includes(name), 'the watch to list')
      await k('create', 'configmap', `${name}-watched`, '-n', 'default')
      await until(() => seen.includes(`${name}-watched`), 'the watch event')
      watch.kill('SIGTERM')
      await watch
      await k('delete', 'configmap', name, `${name}-watched`, '-n', 'default')
    })
  }

  it('served kubectl over HTTP/2, as client-go asks for it', async () => {
    const requests = /ksctl_tower_front_end_requests_total\{cluster="member",protocol="h2"\} (\d+)/.exec(
      await metrics(),
    )
    assert.ok(Number(requests?.[1] ?? 0) > 10, 'no HTTP/2 request was counted')
  })

  it('passes a websocket upgrade through the per-cluster kubesphere port', async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${kubespherePort}/echo`)
    await new Promise((resolve, reject) => {
      socket.once('open', resolve)
      socket.once('error', reject)
    })
    const answer = new Promise<string>((resolve) =>
      socket.once('message', (data: Buffer) => resolve(data.toString())),
    )
    socket.send('hello through the tunnel')
    assert.equal(await answer, 'hello through the tunnel')
    socket.close()
  })

  it('rejects an expired and a missing client certificate, and counts them', async () => {
    const expired = await kubeconfigFor(
      `https://127.0.0.1:${frontEnd}/clusters/member`,
      'expired.kubeconfig',
      true,
    )
    const result = await execa(kubectl, ['--kubeconfig', expired, 'get', 'ns'], {reject: false})
    assert.notEqual(result.exitCode, 0)
    assert.match(result.stderr, /Unauthorized/i)
    const ca = await loadProxyCa({stateDir: path.join(dir, 'state')}, false)
    const status = await new Promise<number>((resolve, reject) => {
      https
        .get(
          `https://127.0.0.1:${frontEnd}/clusters/member/api`,
          {ca: ca.certPem, agent: false},
          (response) => {
            response.resume()
            resolve(response.statusCode ?? 0)
          },
        )
        .on('error', reject)
    })
    assert.equal(status, 401)
    const text = await metrics()
    assert.match(text, /reason="expired_client_certificate"\} [1-9]/)
    assert.match(text, /reason="no_client_certificate"\} [1-9]/)
  })

  it('refuses an agent offering only kubesphere-v1, or no sub-protocol, before the upgrade: 400, no session, counted', async () => {
    const ca = await readFile(path.join(dir, 'state', 'ca.crt'), 'utf8')
    const offer = (protocols: string[]) =>
      new Promise<{status: number; body: string}>((resolve, reject) => {
        const socket = new WebSocket(`wss://127.0.0.1:${agentPort}/connect`, protocols, {
          ca,
          headers: {'x-ksctl-cluster': 'member', authorization: `Bearer ${token}`},
        })
        socket.once('open', () => reject(new Error('the upgrade completed')))
        socket.once('unexpected-response', (_request, response: IncomingMessage) => {
          let body = ''
          response.on('data', (chunk: Buffer) => (body += chunk.toString()))
          response.on('end', () => {
            socket.terminate()
            resolve({status: response.statusCode ?? 0, body})
          })
        })
        socket.once('error', (error) => reject(new Error(`the upgrade went on: ${error.message}`)))
      })
    const connectedBefore = proxy.logged('agent connected').length
    const towerAgent = await offer(['kubesphere-v1'])
    assert.equal(towerAgent.status, 400)
    assert.match(towerAgent.body, /sub-protocol ksctl-tunnel\.v1 \(offered: kubesphere-v1\)/)
    assert.equal((await offer([])).status, 400)
    assert.equal(proxy.logged('agent connected').length, connectedBefore)
    const text = await metrics()
    assert.match(text, /ksctl_tower_agent_upgrades_refused_total\{reason="unsupported_subprotocol"\} 1/)
    assert.match(text, /ksctl_tower_agent_upgrades_refused_total\{reason="no_subprotocol"\} 1/)
    assert.match(text, /ksctl_tower_sessions\{cluster="member"\} 1/)
  })

  it('rejects a wrong token, a wrong cluster name and a wrong pin, and counts the rejections', async () => {
    await writeFile(path.join(dir, 'wrong-token'), `${token}-wrong`)
    const agentAs = (name: string, tokenFile: string, verify: string[]) =>
      startKsctl([
        'tower',
        'agent',
        '--name',
        name,
        '--token-file',
        path.join(dir, tokenFile),
        ...verify,
        '--proxy-server',
        `https://127.0.0.1:${agentPort}`,
        '--max-retry-interval',
        '1s',
      ])
    const caFile = ['--proxy-ca', path.join(dir, 'state', 'ca.crt')]
    const wrongToken = agentAs('member', 'wrong-token', caFile)
    const wrongName = agentAs('nosuch', 'token', caFile)
    const wrongPin = agentAs('member', 'token', ['--proxy-pin', `sha256:${'0'.repeat(64)}`])
    others.push(wrongToken, wrongName, wrongPin)
    await until(() => wrongToken.output().includes('rejected this agent (401)'), 'the wrong token rejection')
    await until(() => wrongName.output().includes('rejected this agent (401)'), 'the wrong name rejection')
    await until(() => wrongPin.output().includes('does not match --proxy-pin'), 'the pin mismatch')
    assert.match(
      await metrics(),
      /ksctl_tower_auth_failures_total\{endpoint="agent",reason="bad_credentials"\} [2-9]/,
    )
    for (const running of [wrongToken, wrongName, wrongPin]) {
      running.process.kill('SIGTERM')
      assert.equal((await running.process).exitCode, 0)
    }
    assert.ok(!wrongToken.output().includes(`${token}-wrong`))
  })
})
