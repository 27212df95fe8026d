import assert from 'node:assert/strict'
import {readFile, writeFile} from 'node:fs/promises'
import path from 'node:path'

import {execa} from 'execa'

import type {MemberJoinOutput} from '../../commands/member/join.js'
import type {MemberLeaveResult} from '../../src/kubesphere/member-leave.js'
import {buildImage} from '../../image/build.js'
import {imageUser} from '../../image/image.js'
import {unpackCached, type UnpackedImage} from '../../image/unpack.js'
import {ClusterResource} from '../../src/k8s/resources.js'
import type {KubeSphereCluster} from '../../src/kubesphere/cluster-object.js'
import type {FixtureName} from '../../src/kubesphere-standin/fixtures.js'
import {tempDir} from '../helpers/temp-dir.js'
import {freePort} from '../testbed/http.js'
import {adminApis, resetCluster} from '../testbed/seed.js'
import {bothClusters, run} from './cluster-state.js'
import {testBed} from './hooks.js'
import {pointTowerServiceAt, routeClusterService, runAppliedAgent} from './ksctl-runtime-parts.js'
import {RunningRuntime, startKsctlRuntime} from './running-runtime.js'

const runJs = path.resolve(import.meta.dirname, '..', '..', 'bin', 'run.js')

const editions: {edition: string; host: FixtureName; member: FixtureName; scheme: 'http' | 'https'}[] = [
  // KubeSphere derives http:// addresses (a LoadBalancer's always is): the agent dials the same port over wss://.
  {edition: '3.4', host: 'ks34-host', member: 'ks34-none', scheme: 'http'},
  {edition: '4.1', host: 'ks41-host', member: 'plain', scheme: 'https'},
]

describe("member join --runtime ksctl: ksctl's proxy on the host, ksctl's agent run from its rendered Deployment", function () {
  this.timeout(300_000)
  let image: UnpackedImage

  before(async function () {
    // A warm build redoes only ksctl's layer.
    this.timeout(600_000)
    image = await unpackCached((await buildImage()).archive)
  })

  for (const {edition, host, member, scheme} of editions) {
    describe(`KubeSphere ${edition}`, () => {
      const running = new RunningRuntime()

      afterEach(() => running.stop())

      it('refuses a runtime the host does not run, naming the tower Service and the next step, and changes nothing', async () => {
        const kubeconfig = testBed().kubeconfigPath
        await resetCluster(kubeconfig, 'host', host, {proxyPublishAddress: `${scheme}://127.0.0.1:30721`})
        await resetCluster(kubeconfig, 'member', member)
        const join = [
          'member',
          'join',
          'member1',
          '--host-context',
          'host',
          '--member-context',
          'member',
          '--apply',
        ]
        const towers = await bothClusters()
        const ksctlAgent = await run([...join, '--runtime', 'ksctl'])
        assert.equal(ksctlAgent.exitCode, 1, ksctlAgent.stderr)
        assert.match(
          ksctlAgent.stderr,
          /--runtime ksctl: the host in context "host" runs Tower's proxy \(service kubesphere-system\/tower selects app=tower\)/,
        )
        assert.match(ksctlAgent.stderr, /ksctl proxy install --context host/)
        assert.deepEqual(await bothClusters(), towers)

        await pointTowerServiceAt('ksctl')
        const ksctls = await bothClusters()
        const towerAgent = await run([...join, '--runtime', 'tower'])
        assert.equal(towerAgent.exitCode, 1, towerAgent.stderr)
        assert.match(towerAgent.stderr, /--runtime tower: the host in context "host" runs ksctl's proxy/)
        assert.match(towerAgent.stderr, /ksctl proxy uninstall --context host/)
        assert.deepEqual(await bothClusters(), ksctls)
      })

      it('reaches Ready; kubectl works with the issued kubeconfig at the server it names, verified; the token is only in its Secret', async () => {
        const kubeconfig = testBed().kubeconfigPath
        const {listenPort, clients} = await startKsctlRuntime(running, {host, member, scheme})
        const metricsPort = await freePort()
        const proxyOutput = running.proxy?.output ?? (() => '')

        const join = execa(
          process.execPath,
          [
            runJs,
            ...['member', 'join', 'member1', '--kubeconfig', kubeconfig, '--host-context', 'host'],
            ...['--member-context', 'member', '--apply', '--wait', '--timeout', '120s', '--json'],
          ],
          {reject: false, stdin: 'ignore', env: {NO_COLOR: '1'}, timeout: 200_000},
        )
        const log = (line: string) =>
          process.env.KSCTL_TEST_POD_LOG === '1' ? console.error(line) : undefined
        // The member's kubelet and the host's kube-proxy, while the join runs.
        const [agent, undoRoute] = await Promise.all([
          runAppliedAgent({image, metricsPort, abandon: join, log}),
          routeClusterService('member1'),
        ])
        running.cleanups.push(undoRoute)
        running.agent = agent
        const joined = await join
        assert.equal(joined.exitCode, 0, `${joined.stderr}\n${agent?.output() ?? ''}\n${proxyOutput()}`)
        assert.ok(agent !== undefined)
        const result = JSON.parse(joined.stdout) as MemberJoinOutput
        assert.equal(result.runtime, 'ksctl')
        assert.equal(result.agentAddress, `wss://127.0.0.1:${String(listenPort)}`)
        assert.equal(result.ready, true)
        assert.deepEqual(result.conditions, {Initialized: 'True', AgentAvailable: 'True', Ready: 'True'})
        assert.match(
          joined.stderr,
          /^runtime ksctl: the host runs ksctl's proxy: service kubesphere-system\/tower selects app\.kubernetes\.io\/name=ksctl-tower-proxy$/m,
        )

        const hostClient = clients.forContext('host')
        const cluster = await hostClient.findCustomObject<KubeSphereCluster>(ClusterResource, 'member1')
        const token = cluster?.spec?.connection?.token ?? ''
        assert.match(token, /^[0-9a-f]{64}$/)
        // kubectl at the server the issued kubeconfig names (Service mc-member1's ClusterIP), verifying the proxy.
        const issued = path.join(tempDir('ksctl-join-ksctl-'), 'member1.kubeconfig')
        await writeFile(issued, Buffer.from(cluster?.spec?.connection?.kubeconfig ?? '', 'base64'), {
          mode: 0o600,
        })
        assert.match(await readFile(issued, 'utf8'), /server: https:\/\/10\.\d+\.\d+\.\d+:6443/)
        const kubectl = await execa(
          '/usr/bin/kubectl',
          [
            '--kubeconfig',
            issued,
            '--request-timeout',
            '20s',
            'get',
            'namespace',
            'kube-system',
            '-o',
            'name',
          ],
          {reject: false, stdin: 'ignore'},
        )
        assert.equal(kubectl.stdout, 'namespace/kube-system', kubectl.stderr)

        // The agent ran as its Deployment says: the image's user under tini, its token a file, never an argument.
        const status = await readFile(`/proc/${String(agent.hostPid())}/status`, 'utf8')
        assert.match(status, /^Name:\s+tini$/m)
        assert.match(status, new RegExp(`^Uid:\\s+${String(imageUser.uid)}\\s`, 'm'))
        const deployment = await adminApis(kubeconfig, 'member').apps.readNamespacedDeployment({
          name: 'ksctl-tower-agent',
          namespace: 'kubesphere-system',
        })
        assert.ok(!JSON.stringify(deployment).includes(token))
        for (const output of [joined.stdout, joined.stderr, agent.output(), proxyOutput()]) {
          assert.ok(!output.includes(token), 'no token in any output')
          assert.ok(!output.includes(Buffer.from(token).toString('base64')), 'nor in base64')
        }
        assert.deepEqual(await agent.stop(), {exitCode: 0, signal: undefined}, agent.output())
        running.agent = undefined

        // And out again: leave finds ksctl's agent and removes every object its manifest made, nothing of Tower's.
        const left = await run([
          ...['member', 'leave', 'member1', '--host-context', 'host', '--member-context', 'member'],
          ...['--yes', '--json'],
        ])
        assert.equal(left.exitCode, 0, left.stderr)
        const removed = (JSON.parse(left.stdout) as MemberLeaveResult).changes
          .filter((change) => change.context === 'member' && change.action === 'delete')
          .map((change) => `${change.object.resource}/${change.object.name}`)
        assert.equal(removed[0], 'deployments/ksctl-tower-agent', 'the Deployment first: it stops dialing')
        assert.ok(removed.includes('secrets/ksctl-tower-agent-token'), removed.join(', '))
        assert.ok(!removed.some((object) => /cluster-agent|\/tower$/.test(object)), removed.join(', '))
        const labelled = await execa(
          '/usr/bin/kubectl',
          [
            ...['--kubeconfig', kubeconfig, '--context', 'member', 'get', '-A', '-o', 'name'],
            ...['-l', 'app.kubernetes.io/name=ksctl-tower-agent'],
            'deployments,secrets,configmaps,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings',
          ],
          {reject: false, stdin: 'ignore'},
        )
        assert.equal(labelled.exitCode, 0, labelled.stderr)
        assert.equal(labelled.stdout, '', "nothing of ksctl's agent is left on the member")
        assert.ok(await adminApis(kubeconfig, 'member').core.readNamespace({name: 'kubesphere-system'}))
        assert.equal(await hostClient.findCustomObject(ClusterResource, 'member1'), undefined)
        for (const output of [left.stdout, left.stderr]) {
          assert.ok(!output.includes(token) && !output.includes(Buffer.from(token).toString('base64')))
        }
      })
    })
  }
})
