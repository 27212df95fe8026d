import path from 'node:path'

import {Flags} from '@oclif/core'

import {BaseCommand} from '../../src/cli/base-command.js'
import {log} from '../../src/log.js'
import {playgroundDown, type PlaygroundDownResult} from '../../src/playground/down.js'
import {DEFAULT_DIR} from '../../src/playground/state.js'

export default class PlaygroundDown extends BaseCommand<typeof PlaygroundDown> {
  static override summary = 'Stop the playground (detached or not) and remove every file it made.'

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --dir /tmp/pg',
  ]

  static override flags = {
    dir: Flags.string({description: 'directory of the playground', default: DEFAULT_DIR}),
  }

  async run(): Promise<PlaygroundDownResult> {
    const result = await playgroundDown(path.resolve(this.flags.dir))
    if (!result.removed) log.warn(`no playground in ${result.dir}: nothing to stop`)
    else if (result.stopped === undefined)
      this.print(`removed what a stopped playground left in ${result.dir}\n`)
    else
      this.print(
        `stopped the playground (pid ${String(result.stopped)}) and removed its files from ${result.dir}\n`,
      )
    return result
  }
}
