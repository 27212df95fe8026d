import assert from 'node:assert/strict'
import {cp, readdir, readFile, writeFile, appendFile} from 'node:fs/promises'
import path from 'node:path'

import {PatchStrategy, setHeaderOptions, type V1Deployment} from '@kubernetes/client-node'
import {execa} from 'execa'

import {buildImage, type BuiltImage} from '../../image/build.js'
import {appDirectory, imageUser, layerNames, repositoryRoot} from '../../image/image.js'
import {unpackCached, type UnpackedImage} from '../../image/unpack.js'
import {ClusterClients} from '../../src/k8s/clients.js'
import {ClusterResource} from '../../src/k8s/resources.js'
import {conditionOf, type KubeSphereCluster} from '../../src/kubesphere/cluster-object.js'
import {until} from '../helpers/ksctl-running.js'
import {runPod, type RunningPod} from '../helpers/pod-runner.js'
import {tempDir} from '../helpers/temp-dir.js'
import {freeClusterPorts, freePort} from '../testbed/http.js'
import {adminApis, createCluster, resetCluster} from '../testbed/seed.js'
import {testBed} from './hooks.js'
import {clusterObjects} from './ksctl-runtime-parts.js'

/**
 * ksctl's image as built by `npm run image`, and ksctl's proxy and agent run from it as their Deployments say,
 * through the pod runner (unshare + chroot: no container runtime runs on these machines).
 */
describe('the ksctl image', function () {
  // A cold build downloads the Debian packages, Node.js and the dependencies; a warm one redoes the top layer.
  this.timeout(600_000)
  let built: BuiltImage
  let image: UnpackedImage

  before(async function () {
    this.timeout(600_000)
    built = await buildImage()
    image = await unpackCached(built.archive)
  })

  it('runs as a numeric non-root user under tini, has CA certificates and no shell, and skopeo reads the archive', async () => {
    assert.equal(image.config.User, `${String(imageUser.uid)}:${String(imageUser.gid)}`)
    assert.deepEqual(image.config.Entrypoint, [
      '/usr/bin/tini',
      '--',
      '/usr/local/bin/node',
      '/app/bin/run.js',
    ])
    assert.equal(image.config.WorkingDir, appDirectory)
    const bundle = await readFile(path.join(image.rootfs, 'etc/ssl/certs/ca-certificates.crt'), 'utf8')
    assert.ok(bundle.split('BEGIN CERTIFICATE').length > 100, 'the Debian CA bundle')
    const shells = (await readdir(image.rootfs, {recursive: true})).filter((entry) =>
      ['sh', 'bash', 'dash', 'busybox', 'ash', 'zsh'].includes(path.basename(entry)),
    )
    assert.deepEqual(shells, [])
    assert.match(await readFile(path.join(image.rootfs, 'etc/passwd'), 'utf8'), /^nonroot:x:65532:65532:/m)

    const inspected = JSON.parse(
      (await execa('skopeo', ['inspect', `oci-archive:${built.archive}`])).stdout,
    ) as {Layers: string[]; Labels: Record<string, string>}
    assert.deepEqual(
      inspected.Layers,
      built.layers.map((layer) => layer.digest),
    )
    assert.equal(inspected.Labels['org.opencontainers.image.version'], built.tag)
    const config = JSON.parse(
      (await execa('skopeo', ['inspect', '--config', `oci-archive:${built.archive}`])).stdout,
    ) as {history: {created_by: string}[]}
    assert.deepEqual(
      config.history.map((entry) => /^ksctl image layer (\S+):/.exec(entry.created_by)?.[1]),
      [...layerNames],
    )
  })

  it('changes only its top layer when ksctl changes', async () => {
    const copy = tempDir('ksctl-image-source-')
    for (const entry of [
      'package.json',
      'package-lock.json',
      'bin',
      'dist',
      'templates',
      'oclif.manifest.json',
    ])
      await cp(path.join(repositoryRoot, entry), path.join(copy, entry), {recursive: true})
    await appendFile(path.join(copy, 'dist/commands/tower/proxy.js'), '\n// changed\n')
    const changed = await buildImage({repository: copy, archive: path.join(copy, 'changed.oci.tar')})
    assert.deepEqual(
      changed.layers.slice(0, -1).map((layer) => layer.digest),
      built.layers.slice(0, -1).map((layer) => layer.digest),
    )
    assert.notEqual(changed.layers.at(-1)?.digest, built.layers.at(-1)?.digest)
  })

  describe('the pod runner', function () {
    const pods: RunningPod[] = []
    const cleanups: (() => Promise<unknown>)[] = []
    afterEach(async () => {
      for (const pod of pods.splice(0)) await pod.stop(5)
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined)
    })

    it('gives the container what a kubelet gives it: args, expanded env, volumes, its user and groups, a read-only root, PID 1', async () => {
      const port = await freePort()
      // Node itself stands in for a program: it reports what it sees, then serves the readiness probe.
      const report = `
        const fs = require('node:fs')
        const attempt = (write) => { try { write(); return 'written' } catch (error) { return error.code } }
        console.log(JSON.stringify({
          argv: process.argv.slice(1), uid: process.getuid(), gid: process.getgid(), groups: process.getgroups(),
          cwd: process.cwd(), hostname: require('node:os').hostname(), ppid: process.ppid,
          env: {GREETING: process.env.GREETING, FROM_CONFIG: process.env.CFG_level, HOME: process.env.HOME,
            KUBERNETES_SERVICE_HOST: process.env.KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT: process.env.KUBERNETES_SERVICE_PORT},
          token: fs.readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/token', 'utf8'),
          namespace: fs.readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8'),
          secret: fs.readFileSync('/etc/creds/renamed', 'utf8'),
          secretMode: (fs.statSync('/etc/creds/renamed').mode & 0o777).toString(8),
          secretGroup: fs.statSync('/etc/creds/renamed').gid,
          config: fs.readFileSync('/etc/app/level', 'utf8'),
          root: attempt(() => fs.writeFileSync('/written', 'x')),
          scratch: attempt(() => fs.writeFileSync('/scratch/written', 'x')),
          secretWrite: attempt(() => fs.writeFileSync('/etc/creds/other', 'x')),
        }))
        require('node:http').createServer((_, response) => response.end('ok')).listen(Number(process.argv[1]), '127.0.0.1')
      `
      const labels = {app: 'reporter'}
      const pod = await runPod({
        deployment: {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: {name: 'reporter', namespace: 'tests'},
          spec: {
            selector: {matchLabels: labels},
            template: {
              metadata: {labels},
              spec: {
                securityContext: {
                  runAsUser: 1234,
                  runAsGroup: 2345,
                  fsGroup: 3456,
                  supplementalGroups: [4567],
                },
                volumes: [
                  {
                    name: 'creds',
                    secret: {
                      secretName: 'creds',
                      items: [{key: 'password', path: 'renamed'}],
                      defaultMode: 0o400,
                    },
                  },
                  {name: 'app', configMap: {name: 'app'}},
                  {name: 'scratch', emptyDir: {}},
                ],
                containers: [
                  {
                    name: 'reporter',
                    image: 'anything:1',
                    command: ['/usr/local/bin/node', '-e', report],
                    args: ['$(PORT)'],
                    env: [
                      {name: 'POD_NAME', valueFrom: {fieldRef: {fieldPath: 'metadata.name'}}},
                      {name: 'PORT', value: String(port)},
                      {name: 'GREETING', value: 'hello $(POD_NAME) $$(POD_NAME) $(UNDEFINED)'},
                    ],
                    envFrom: [{configMapRef: {name: 'app'}, prefix: 'CFG_'}],
                    ports: [{name: 'http', containerPort: port}],
                    readinessProbe: {httpGet: {path: '/', port: 'http'}, periodSeconds: 1},
                    volumeMounts: [
                      {name: 'creds', mountPath: '/etc/creds'},
                      {name: 'app', mountPath: '/etc/app'},
                      {name: 'scratch', mountPath: '/scratch'},
                    ],
                    securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false},
                  },
                ],
              },
            },
          },
        },
        image,
        podName: 'reporter-abc12',
        serviceAccount: {token: 'a-token', caCert: 'a-ca', namespace: 'tests'},
        apiServer: {host: '127.0.0.1', port: 6443},
        secrets: {creds: {password: 's3cret'}},
        configMaps: {app: {level: 'debug'}},
      })
      pods.push(pod)
      await pod.ready(30_000)
      const seen = JSON.parse(pod.output().split('\n')[0] ?? '') as Record<string, unknown>
      assert.deepEqual(seen, {
        argv: [String(port)],
        uid: 1234,
        gid: 2345,
        groups: [2345, 3456, 4567],
        cwd: '/app',
        hostname: 'reporter-abc12',
        // The command replaces the image's entrypoint (tini): node is the namespace's PID 1, its parent outside it.
        ppid: 0,
        env: {
          GREETING: 'hello reporter-abc12 $(POD_NAME) $(UNDEFINED)',
          FROM_CONFIG: 'debug',
          HOME: '/',
          KUBERNETES_SERVICE_HOST: '127.0.0.1',
          KUBERNETES_SERVICE_PORT: '6443',
        },
        token: 'a-token',
        namespace: 'tests',
        secret: 's3cret',
        secretMode: '440',
        secretGroup: 3456,
        config: 'debug',
        root: 'EROFS',
        scratch: 'written',
        secretWrite: 'EROFS',
      })
      // As PID 1 without a SIGTERM handler node ignores SIGTERM (the reason the image runs tini): the grace
      // period ends in SIGKILL.
      const exit = await pod.stop(1)
      assert.ok(exit.signal === 'SIGKILL' || exit.exitCode === 137, JSON.stringify(exit))
      assert.ok(
        pod.events.some((event) => event.startsWith('Killing: still running 1 s after SIGTERM')),
        pod.events.join('; '),
      )
    })

    it('restarts a container whose liveness probe fails, as the kubelet does', async () => {
      const labels = {app: 'unhealthy'}
      const pod = await runPod({
        deployment: {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: {name: 'unhealthy'},
          spec: {
            selector: {matchLabels: labels},
            template: {
              metadata: {labels},
              spec: {
                automountServiceAccountToken: false,
                terminationGracePeriodSeconds: 2,
                containers: [
                  {
                    name: 'sleeper',
                    image: 'anything:1',
                    // Node serves nothing: the probe's port is closed.
                    command: [
                      '/usr/bin/tini',
                      '--',
                      '/usr/local/bin/node',
                      '-e',
                      'setInterval(() => {}, 1000)',
                    ],
                    livenessProbe: {
                      tcpSocket: {port: await freePort()},
                      periodSeconds: 1,
                      failureThreshold: 2,
                    },
                  },
                ],
              },
            },
          },
        },
        image,
        apiServer: {host: '127.0.0.1', port: 6443},
        restartBackoffMs: 100,
      })
      pods.push(pod)
      await until(() => pod.restartCount() >= 1, 'a restart', {
        timeoutMs: 30_000,
        output: () => pod.events.join('\n'),
      })
      assert.ok(
        pod.events.some((event) => event.startsWith('Killing: Liveness probe failed')),
        pod.events.join('; '),
      )
    })

    it('updates a projected volume when its Secret and ConfigMap change on the member, as the kubelet syncs it (a subPath file stays)', async () => {
      const member = adminApis(testBed().kubeconfigPath, 'member')
      const namespace = 'default'
      const names = {secret: 'pod-runner-sync-token', configMap: 'pod-runner-sync-ca'}
      const base64 = (text: string) => Buffer.from(text).toString('base64')
      await member.core.deleteNamespacedSecret({namespace, name: names.secret}).catch(() => undefined)
      await member.core.deleteNamespacedConfigMap({namespace, name: names.configMap}).catch(() => undefined)
      await member.core.createNamespacedSecret({
        namespace,
        body: {metadata: {name: names.secret}, data: {token: base64('first-token')}},
      })
      cleanups.push(() => member.core.deleteNamespacedSecret({namespace, name: names.secret}))
      await member.core.createNamespacedConfigMap({
        namespace,
        body: {metadata: {name: names.configMap}, data: {'ca.crt': 'first-ca'}},
      })
      cleanups.push(() => member.core.deleteNamespacedConfigMap({namespace, name: names.configMap}))

      // Node reports each change it sees in its mounted files, as a program re-reading its --token-file would.
      const watcher = `
        const fs = require('node:fs')
        const read = (file) => {
          try {
            const stat = fs.statSync(file)
            return {content: fs.readFileSync(file, 'utf8'), mode: (stat.mode & 0o777).toString(8), gid: stat.gid}
          } catch (error) { return {error: error.code} }
        }
        let last = ''
        setInterval(() => {
          const seen = JSON.stringify({
            token: read('/etc/tunnel/token'), ca: read('/etc/tunnel/ca.crt'), pinned: read('/etc/pinned-token'),
          })
          if (seen !== last) console.log((last = seen))
        }, 20)
      `
      const labels = {app: 'watcher'}
      const pod = await runPod({
        deployment: {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: {name: 'watcher', namespace},
          spec: {
            selector: {matchLabels: labels},
            template: {
              metadata: {labels},
              spec: {
                automountServiceAccountToken: false,
                securityContext: {runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532},
                volumes: [
                  {
                    name: 'tunnel',
                    projected: {
                      defaultMode: 0o440,
                      sources: [
                        {secret: {name: names.secret, items: [{key: 'token', path: 'token'}]}},
                        {configMap: {name: names.configMap, items: [{key: 'ca.crt', path: 'ca.crt'}]}},
                      ],
                    },
                  },
                ],
                containers: [
                  {
                    name: 'watcher',
                    image: 'anything:1',
                    command: ['/usr/bin/tini', '--', '/usr/local/bin/node', '-e', watcher],
                    volumeMounts: [
                      {name: 'tunnel', mountPath: '/etc/tunnel', readOnly: true},
                      {name: 'tunnel', mountPath: '/etc/pinned-token', subPath: 'token'},
                    ],
                  },
                ],
              },
            },
          },
        },
        image,
        apiServer: {host: '127.0.0.1', port: testBed().clusters.member.port},
        objectSource: clusterObjects('member'),
        volumeSyncMs: 200,
      })
      pods.push(pod)
      interface Seen {
        content?: string
        mode?: string
        gid?: number
        error?: string
      }
      // The last whole line the container wrote.
      const latest = () => {
        const output = pod.output()
        const line = output.slice(0, output.lastIndexOf('\n')).split('\n').at(-1) ?? ''
        return (line.startsWith('{') ? JSON.parse(line) : {}) as {token?: Seen; ca?: Seen; pinned?: Seen}
      }
      const seesToken = (token: string, ca: string) => async () => {
        await until(
          () => latest().token?.content === token && latest().ca?.content === ca,
          `the container to read token ${token} and CA ${ca}`,
          {timeoutMs: 30_000, output: () => `${pod.events.join('\n')}\n${pod.output()}`},
        )
      }
      await seesToken('first-token', 'first-ca')()

      await member.core.patchNamespacedSecret(
        {namespace, name: names.secret, body: {data: {token: base64('second-token')}}},
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      )
      await seesToken('second-token', 'first-ca')()
      await member.core.patchNamespacedConfigMap(
        {namespace, name: names.configMap, body: {data: {'ca.crt': 'second-ca'}}},
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      )
      await seesToken('second-token', 'second-ca')()
      assert.deepEqual(latest(), {
        // Replaced with the mode and group the first write gave (0440 and fsGroup).
        token: {content: 'second-token', mode: '440', gid: 65532},
        ca: {content: 'second-ca', mode: '440', gid: 65532},
        // A file mounted alone is bound by its inode: the kubelet does not update it, nor does the pod runner.
        pinned: {content: 'first-token', mode: '440', gid: 65532},
      })
      assert.deepEqual(
        pod.events.filter((event) => event.startsWith('VolumeUpdated')),
        ['VolumeUpdated: volume tunnel: token', 'VolumeUpdated: volume tunnel: ca.crt'],
        pod.events.join('; '),
      )

      // A Secret gone: the kubelet reports it and keeps the files it wrote.
      await member.core.deleteNamespacedSecret({namespace, name: names.secret})
      await until(
        () => pod.events.some((event) => event.startsWith('FailedMount: volume tunnel')),
        'FailedMount',
        {timeoutMs: 30_000, output: () => pod.events.join('\n')},
      )
      assert.match(
        pod.events.find((event) => event.startsWith('FailedMount')) ?? '',
        /^FailedMount: volume tunnel: the pod needs Secret default\/pod-runner-sync-token, which/,
      )
      assert.equal(latest().token?.content, 'second-token')
      assert.ok(!pod.events.some((event) => event.startsWith('Exited')), pod.events.join('; '))
    })
  })

  describe('ksctl tower proxy and agent from the image, as Deployments', function () {
    const pods: RunningPod[] = []
    const cleanups: (() => Promise<unknown>)[] = []

    afterEach(async () => {
      for (const pod of pods.splice(0)) await pod.stop(5)
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined)
    })

    it('the proxy (Kubernetes mode, its service account) and the agent connect, kubectl reaches the member through them, and both stop cleanly on SIGTERM', async () => {
      const kubeconfig = testBed().kubeconfigPath
      const {host: hostServer, member: memberServer} = testBed().clusters
      const [listenPort, frontEndPort, proxyMetricsPort, agentMetricsPort] = [
        await freePort(),
        await freePort(),
        await freePort(),
        await freePort(),
      ]
      await resetCluster(kubeconfig, 'host', 'ks41-host', {
        proxyPublishAddress: `https://127.0.0.1:${String(listenPort)}`,
      })
      await resetCluster(kubeconfig, 'member', 'plain')
      const clusterPorts = await freeClusterPorts(2)
      const host = adminApis(kubeconfig, 'host')
      const member = adminApis(kubeconfig, 'member')

      // The proxy's service account on the host; the agent's on the member. What an install grants them
      // (least privilege) is the install's to test; here both are cluster-admin.
      const proxyAccount = await serviceAccount(kubeconfig, 'host', 'kubesphere-system', 'ksctl-tower-proxy')
      cleanups.push(proxyAccount.remove)
      const agentAccount = await serviceAccount(kubeconfig, 'member', 'kube-system', 'ksctl-tower-agent')
      cleanups.push(agentAccount.remove)
      // Whoever the tunnel's requests run as on the member (the agent's account, or the client it impersonates),
      // it may read namespaces.
      await member.rbac.createClusterRole({
        body: {
          metadata: {name: 'ksctl-image-test-read-namespaces'},
          rules: [{apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'list']}],
        },
      })
      cleanups.push(() => member.rbac.deleteClusterRole({name: 'ksctl-image-test-read-namespaces'}))
      await member.rbac.createClusterRoleBinding({
        body: {
          metadata: {name: 'ksctl-image-test-read-namespaces'},
          roleRef: {
            apiGroup: 'rbac.authorization.k8s.io',
            kind: 'ClusterRole',
            name: 'ksctl-image-test-read-namespaces',
          },
          subjects: [{apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:authenticated'}],
        },
      })
      cleanups.push(() => member.rbac.deleteClusterRoleBinding({name: 'ksctl-image-test-read-namespaces'}))

      await createCluster(host, 'member1', {joinFederation: true, connection: {type: 'proxy'}})

      const log = (line: string) => (process.env.KSCTL_TEST_POD_LOG === '1' ? console.error(line) : undefined)
      const proxy = await runPod({
        deployment: proxyDeployment({
          listen: `127.0.0.1:${String(listenPort)}`,
          frontEnd: `127.0.0.1:${String(frontEndPort)}`,
          metricsPort: proxyMetricsPort,
          clusterPorts: clusterPorts.flag,
        }),
        image,
        serviceAccount: {
          token: proxyAccount.token,
          caCert: testBed().caCertPem,
          namespace: 'kubesphere-system',
        },
        apiServer: {host: '127.0.0.1', port: hostServer.port},
        log,
      })
      pods.push(proxy)
      await proxy.ready()

      const clients = ClusterClients.load({kubeconfig}).forContext('host')
      const cluster = () => clients.findCustomObject<KubeSphereCluster>(ClusterResource, 'member1')
      const token = (await cluster())?.spec?.connection?.token ?? ''
      assert.match(token, /^[0-9a-f]{64}$/)
      const proxyCa = await clients.findSecret('kubesphere-system', 'ksctl-tower-ca')
      const proxyCaPem = proxyCa?.data['tls.crt'] ?? ''

      const agent = await runPod({
        deployment: agentDeployment({
          proxyServer: `https://127.0.0.1:${String(listenPort)}`,
          metricsPort: agentMetricsPort,
        }),
        image,
        serviceAccount: {
          token: agentAccount.token,
          caCert: testBed().caCertPem,
          namespace: 'kube-system',
        },
        apiServer: {host: '127.0.0.1', port: memberServer.port},
        secrets: {'ksctl-tower-agent': {token, 'ca.crt': proxyCaPem}},
        log,
      })
      pods.push(agent)
      await agent.ready()

      await until(
        async () => conditionOf(await cluster(), 'AgentAvailable')?.status === 'True',
        'AgentAvailable',
        {
          timeoutMs: 60_000,
          output: () => proxy.output() + agent.output(),
        },
      )
      const connection = (await cluster())?.spec?.connection
      const issued = path.join(tempDir('ksctl-image-kubeconfig-'), 'member1.kubeconfig')
      await writeFile(issued, Buffer.from(connection?.kubeconfig ?? '', 'base64'), {mode: 0o600})
      // The issued server is the mc-member1 ClusterIP, which only kube-proxy routes; the same listener serves
      // the cluster's own port and the path-routed front end here.
      for (const server of [
        `https://127.0.0.1:${String((connection as {kubernetesAPIServerPort?: number} | undefined)?.kubernetesAPIServerPort)}`,
        `https://127.0.0.1:${String(frontEndPort)}/clusters/member1`,
      ]) {
        const kubectl = await execa(
          '/usr/bin/kubectl',
          ['--kubeconfig', issued, '--server', server, '--request-timeout', '20s'].concat([
            'get',
            'namespace',
            'kube-system',
            '-o',
            'name',
          ]),
          {reject: false, stdin: 'ignore'},
        )
        assert.equal(kubectl.stdout, 'namespace/kube-system', `${server}: ${kubectl.stderr}`)
      }

      // Both run as the image's user, under tini as PID 1 of their namespace.
      for (const pod of [proxy, agent]) {
        const status = await readFile(`/proc/${String(pod.hostPid())}/status`, 'utf8')
        assert.match(status, /^Name:\s+tini$/m)
        assert.match(status, new RegExp(`^Uid:\\s+${String(imageUser.uid)}\\s`, 'm'))
      }

      // SIGTERM reaches ksctl through tini, and it drains and exits 0 well within the grace period.
      for (const pod of pods.splice(0).reverse()) {
        assert.deepEqual(await pod.stop(), {exitCode: 0, signal: undefined}, pod.output())
        assert.ok(!pod.events.some((event) => event.startsWith('Killing')), pod.events.join('; '))
        assert.equal(pod.restartCount(), 0)
        assert.ok(!pod.output().includes(token), 'no token in the logs')
      }
    })
  })
})

async function serviceAccount(
  kubeconfig: string,
  context: string,
  namespace: string,
  name: string,
): Promise<{token: string; remove: () => Promise<unknown>}> {
  const apis = adminApis(kubeconfig, context)
  await apis.core.createNamespacedServiceAccount({namespace, body: {metadata: {name}}})
  const binding = `${name}-${namespace}`
  await apis.rbac.createClusterRoleBinding({
    body: {
      metadata: {name: binding},
      roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin'},
      subjects: [{kind: 'ServiceAccount', name, namespace}],
    },
  })
  const created = await execa('/usr/bin/kubectl', [
    ...['--kubeconfig', kubeconfig, '--context', context, '-n', namespace],
    ...['create', 'token', name, '--duration', '1h'],
  ])
  return {
    token: created.stdout.trim(),
    remove: async () => {
      await apis.rbac.deleteClusterRoleBinding({name: binding}).catch(() => undefined)
      await apis.core.deleteNamespacedServiceAccount({namespace, name}).catch(() => undefined)
    },
  }
}

const restricted = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: {drop: ['ALL']},
}

function proxyDeployment(ports: {
  listen: string
  frontEnd: string
  metricsPort: number
  clusterPorts: string
}): V1Deployment {
  const labels = {'app.kubernetes.io/name': 'ksctl-tower-proxy'}
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {name: 'ksctl-tower-proxy', namespace: 'kubesphere-system', labels},
    spec: {
      selector: {matchLabels: labels},
      template: {
        metadata: {labels},
        spec: {
          serviceAccountName: 'ksctl-tower-proxy',
          securityContext: {runAsNonRoot: true, seccompProfile: {type: 'RuntimeDefault'}},
          containers: [
            {
              name: 'proxy',
              image: 'ksctl:0.1.0',
              args: [
                ...['tower', 'proxy', '--listen', ports.listen, '--front-end', ports.frontEnd],
                ...['--metrics-address', `127.0.0.1:${String(ports.metricsPort)}`],
                ...['--cluster-ports', ports.clusterPorts, '--resync', '1s', '--log-format', 'json'],
              ],
              ports: [{name: 'metrics', containerPort: ports.metricsPort}],
              readinessProbe: {httpGet: {path: '/readyz', port: 'metrics'}, periodSeconds: 1},
              livenessProbe: {httpGet: {path: '/healthz', port: 'metrics'}, periodSeconds: 5},
              securityContext: restricted,
            },
          ],
        },
      },
    },
  }
}

function agentDeployment(options: {proxyServer: string; metricsPort: number}): V1Deployment {
  const labels = {'app.kubernetes.io/name': 'ksctl-tower-agent'}
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {name: 'ksctl-tower-agent', namespace: 'kube-system', labels},
    spec: {
      selector: {matchLabels: labels},
      template: {
        metadata: {labels},
        spec: {
          serviceAccountName: 'ksctl-tower-agent',
          securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532},
          volumes: [{name: 'tunnel', secret: {secretName: 'ksctl-tower-agent', defaultMode: 0o440}}],
          containers: [
            {
              name: 'agent',
              image: 'ksctl:0.1.0',
              args: [
                ...['tower', 'agent', '--name', 'member1', '--token-file', '/etc/ksctl-tower/token'],
                ...['--proxy-server', options.proxyServer, '--proxy-ca', '/etc/ksctl-tower/ca.crt'],
                // The kubelet expands these from the kubernetes Service's env.
                ...['--kubernetes-service', '$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)'],
                ...['--metrics-address', `127.0.0.1:${String(options.metricsPort)}`],
                ...['--keepalive', '1s', '--log-format', 'json'],
              ],
              ports: [{name: 'metrics', containerPort: options.metricsPort}],
              volumeMounts: [{name: 'tunnel', mountPath: '/etc/ksctl-tower', readOnly: true}],
              readinessProbe: {httpGet: {path: '/readyz', port: 'metrics'}, periodSeconds: 1},
              livenessProbe: {httpGet: {path: '/healthz', port: 'metrics'}, periodSeconds: 5},
              securityContext: restricted,
            },
          ],
        },
      },
    },
  }
}
