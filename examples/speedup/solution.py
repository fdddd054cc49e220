"""The function to make faster: edit distance between pairs of strings.

This is the file a proposer edits; any change is allowed as long as the answers stay right
(the protected benchmark checks every one against its own reference and voids a wrong run).
The knobs choose between implementation tricks of different worth.
"""

TWO_ROWS = False  # keep two rows of the table instead of the whole table
LOCAL_MIN = False  # look `min` up once, not in every cell
SKIP_EQUAL = False  # answer 0 at once for equal strings (the benchmark's inputs never are)


def distance(a: str, b: str) -> int:
    if SKIP_EQUAL and a == b:
        return 0
    smallest = min
    if TWO_ROWS:
        previous = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            current = [i]
            for j, cb in enumerate(b, 1):
                cost = 0 if ca == cb else 1
                if LOCAL_MIN:
                    current.append(smallest(previous[j] + 1, current[j - 1] + 1,
                                            previous[j - 1] + cost))
                else:
                    current.append(min(previous[j] + 1, current[j - 1] + 1,
                                       previous[j - 1] + cost))
            previous = current
        return previous[-1]
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        table[i][0] = i
    for j in range(len(b) + 1):
        table[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            if LOCAL_MIN:
                table[i][j] = smallest(table[i - 1][j] + 1, table[i][j - 1] + 1,
                                       table[i - 1][j - 1] + cost)
            else:
                table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1,
                                  table[i - 1][j - 1] + cost)
    return table[-1][-1]


def solve(pairs: list[list[str]]) -> list[int]:
    return [distance(a, b) for a, b in pairs]
