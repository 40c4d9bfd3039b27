package cli

// bashCompletion completes perund's commands, the flags of call and watch,
// the node's method names after "perund call" (asking the node through
// "perund call --list-methods" with the -url and -token already typed)
// and the topics after "perund watch". It splits the line itself at
// blanks: bash's own words break at ":" and "=", which URLs contain.
const bashCompletion = `# bash completion for perund: source <(perund completion bash)
_perund() {
	local line=${COMP_LINE:0:COMP_POINT} words cur n
	read -ra words <<<"$line"
	n=${#words[@]}
	if [[ $line =~ [[:space:]]$ ]]; then
		cur=
	else
		cur=${words[n - 1]}
		n=$((n - 1))
	fi
	COMPREPLY=()
	if ((n <= 1)); then
		COMPREPLY=($(compgen -W "dev run keys call watch completion version help" -- "$cur"))
		return
	fi
	local cmd=${words[1]} prev=${words[n - 1]}
	case $cmd in
	call | watch)
		case $prev in
		-url | --url | -token | --token | -session | --session | -account | --account | -timeout | --timeout)
			return ;;
		esac
		if [[ $cur == -* ]]; then
			local flags="-url -token -session -account -timeout -h"
			[[ $cmd == call ]] && flags+=" -list-methods"
			COMPREPLY=($(compgen -W "$flags" -- "$cur"))
			return
		fi
		if [[ $cmd == watch ]]; then
			COMPREPLY=($(compgen -W "proposals updates channels disputes" -- "$cur"))
			return
		fi
		local i w conn=()
		for ((i = 2; i < n; i++)); do
			w=${words[i]}
			case $w in
			-url | --url | -token | --token)
				conn+=("$w" "${words[i + 1]}")
				i=$((i + 1)) ;;
			-session | --session | -account | --account | -timeout | --timeout)
				i=$((i + 1)) ;;
			-url=* | --url=* | -token=* | --token=*)
				conn+=("$w") ;;
			-*) ;;
			*) return ;; # the method is there: params are free-form
			esac
		done
		local IFS=$'\n'
		COMPREPLY=($(compgen -W "$("${words[0]}" call -timeout 5s "${conn[@]}" --list-methods 2>/dev/null)" -- "$cur"))
		;;
	completion)
		COMPREPLY=($(compgen -W "bash" -- "$cur")) ;;
	keys)
		((n == 2)) && COMPREPLY=($(compgen -W "new import list" -- "$cur")) ;;
	esac
}
complete -F _perund perund
`
