import {type Command, Help} from '@oclif/core'

/**
 * oclif's help, less one quirk: it prints any truthy default, so a repeatable flag whose default is an
 * empty list (`--label`, `--allow`, `--server-name`) showed `[default: ]`. A default that reads as
 * nothing is not shown. package.json's `oclif.helpClass` names this class, so `--help`, `ksctl help` and
 * the README's command reference (`npm run readme`) all render through it; it imports nothing but oclif,
 * so help still never loads a command's module.
 */
export default class KsctlHelp extends Help {
  protected override formatCommand(command: Command.Loadable): string {
    return super.formatCommand({
      ...command,
      flags: withoutEmptyDefaults(command.flags),
      args: withoutEmptyDefaults(command.args),
    })
  }
}

function withoutEmptyDefaults<T extends {default?: unknown}>(entries: Record<string, T>): Record<string, T> {
  return Object.fromEntries(
    Object.entries(entries).map(([name, entry]) => [
      name,
      readsAsNothing(entry.default) ? {...entry, default: undefined} : entry,
    ]),
  )
}

function readsAsNothing(value: unknown): boolean {
  return (Array.isArray(value) && value.length === 0) || value === ''
}
