import path from 'node:path'

import {Flags} from '@oclif/core'

import {BaseCommand} from '../../src/cli/base-command.js'
import {log} from '../../src/log.js'
import {upDetached} from '../../src/playground/detach.js'
import {DEFAULT_DIR, type PlaygroundState} from '../../src/playground/state.js'
import {displayPath, playgroundUp, VIA_TOWER_CONTEXT} from '../../src/playground/up.js'

export default class PlaygroundUp extends BaseCommand<typeof PlaygroundUp> {
  static override summary =
    'Run the whole agent connection on this machine: a KubeSphere host and member, joined through the tunnel.'

  static override description = [
    "Starts two real kube-apiservers with etcd on 127.0.0.1 (host and member), seeds them as KubeSphere 3.4 (or 4.1 with --edition 4) from KubeSphere's published objects, and runs the real flow with ksctl's own code: host init --wait, proxy set-address, ksctl tower proxy (Kubernetes mode, as the host's tower), member join --apply --wait, and ksctl tower agent (as the agent Deployment's pod, with a service account token from the member). KubeSphere itself cannot run here: a stand-in, named as such in the output, plays ks-installer and the host's cluster controller.",
    "kube-apiserver and etcd come from --apiserver-bin/--etcd-bin, else KUBEBUILDER_ASSETS (envtest), else ksctl's cache, else a build from the pinned Go modules into that cache (minutes, once; needs Go).",
    'DIR/kubeconfig then has contexts host, member and member-via-tower (the kubeconfig the proxy issued: the member through the tunnel, TLS verified). In the foreground until Ctrl-C, which stops every process and removes every file it made; with --detach it keeps running until "ksctl playground down". One playground per DIR.',
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --edition 4 --detach',
    'KUBEBUILDER_ASSETS="$(setup-envtest use -p path)" <%= config.bin %> <%= command.id %>',
  ]

  // Long-running in the foreground; `ksctl playground status --json` is the machine interface.
  static override enableJsonFlag = false

  static override flags = {
    dir: Flags.string({description: 'directory of its files (made and removed by it)', default: DEFAULT_DIR}),
    edition: Flags.option({
      description: 'KubeSphere edition to play: 3 (3.4, ks-installer) or 4 (4.1, ks-core)',
      options: ['3', '4'] as const,
      default: '3' as const,
    })(),
    detach: Flags.boolean({
      description:
        'return once the member has joined and leave it running (stop it with ksctl playground down)',
      default: false,
    }),
    'apiserver-bin': Flags.string({description: 'kube-apiserver binary to run (with --etcd-bin)'}),
    'etcd-bin': Flags.string({description: 'etcd binary to run (with --apiserver-bin)'}),
    // Internal: the process a detached `up` starts, and who made DIR.
    supervise: Flags.option({options: ['new-dir', 'existing-dir'] as const, hidden: true})(),
  }

  async run(): Promise<void> {
    const {flags} = this
    const dir = path.resolve(flags.dir)
    if (flags.detach && flags.supervise === undefined) {
      const upArgs = [
        ...['--dir', dir, '--edition', flags.edition, '--log-level', flags['log-level']],
        ...(flags['apiserver-bin'] === undefined
          ? []
          : ['--apiserver-bin', path.resolve(flags['apiserver-bin'])]),
        ...(flags['etcd-bin'] === undefined ? [] : ['--etcd-bin', path.resolve(flags['etcd-bin'])]),
      ]
      const state = await upDetached(dir, upArgs)
      this.print(tryIt(state, undefined, true))
      return
    }
    const running = await playgroundUp({
      dir,
      edition: flags.edition,
      apiserverBin: flags['apiserver-bin'],
      etcdBin: flags['etcd-bin'],
      ...(flags.supervise === undefined ? {} : {supervised: {createdDir: flags.supervise === 'new-dir'}}),
      say: (line) => log.info(line),
    })
    if (flags.supervise === undefined) this.print(tryIt(running.state, running.tryCommands, false))
    else log.info('the playground runs detached: ksctl playground down stops it')
    // Until Ctrl-C (or `down`): the signal handlers of src/local-cluster stop every process and remove DIR's
    // files; a process that ends on its own ends the playground too.
    await running.failure
  }
}

function tryIt(state: PlaygroundState, commands: string[] | undefined, detached: boolean): string {
  const dir = displayPath(path.dirname(state.kubeconfig))
  const kubectl = `kubectl --kubeconfig ${displayPath(state.kubeconfig)} --context ${VIA_TOWER_CONTEXT}`
  const lines = [
    `member joined: cluster "${state.cluster}" reaches the host through ksctl's tower proxy and agent`,
    `kubeconfig: ${displayPath(state.kubeconfig)} (contexts host, member, ${VIA_TOWER_CONTEXT})`,
    '',
    'try, from another terminal:',
    ...(
      commands ?? [
        `${kubectl} get namespaces`,
        `${kubectl} get configmaps --namespace default --watch`,
        `${kubectl} create configmap hello --namespace default --from-literal=greeting=hello`,
        `${kubectl} delete configmap hello --namespace default`,
      ]
    ).map((command) => `  ${command}`),
    `  ksctl playground status --dir ${dir}`,
    '',
    detached
      ? `it runs in the background: ksctl playground down --dir ${dir} stops it and removes its files`
      : 'Ctrl-C stops it and removes its files',
  ]
  return `${lines.join('\n')}\n`
}
